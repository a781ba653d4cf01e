//! The cluster PKI: CA and every certificate the hard way needs (deliberately no kube-proxy one).
