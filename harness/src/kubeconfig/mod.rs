//! Kubeconfigs for admin (host and in-cluster), the controller manager, the scheduler and each kubelet.
