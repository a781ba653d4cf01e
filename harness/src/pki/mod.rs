//! The cluster PKI: CA and every certificate the hard way needs (deliberately no kube-proxy one).
//!
//! Files in a PKI directory (stable names; `*.key` files are written 0600):
//! - `ca.crt`, `ca.key`: the cluster CA (ECDSA P-256, 10 years).
//! - `admin`, `kube-controller-manager`, `kube-scheduler`: client identities for kubeconfigs.
//! - `kube-apiserver`: serving certificate (and its client identity towards kubelets, CN=kubernetes).
//! - `kubelet-<worker>`: one per worker, CN=system:node:<worker>, O=system:nodes.
//! - `etcd-server`, `etcd-peer`, `etcd-client`.
//! - `service-account.key` / `service-account.pub`: the key pair that signs service account tokens.
//!
//! Each leaf is `<stem>.crt` + `<stem>.key`, valid for one year; every certificate's validity starts an hour
//! in the past, because restored guests' clocks lag.

mod profiles;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

pub use profiles::{kubelet_stem, profiles, Profile, Usage};
pub use store::{cert_path, key_path, CA_STEM, SERVICE_ACCOUNT_KEY, SERVICE_ACCOUNT_PUB};

use crate::spec::ClusterSpec;

pub const CA_VALIDITY_DAYS: i64 = 3650;
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// How far back every certificate's validity starts.
const BACKDATE: Duration = Duration::hours(1);

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The key pair that signs service account tokens (controller-manager) and verifies them (apiserver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountKey {
    pub private_pem: String,
    pub public_pem: String,
}

/// Everything the cluster's TLS needs. Leaves are keyed by their file stem (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPki {
    pub ca: CertKey,
    pub leaves: BTreeMap<String, CertKey>,
    pub service_account: ServiceAccountKey,
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot generate the {what}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the PKI in {} has no {stem} file; run the pki phase again to regenerate it", dir.display())]
    Missing { dir: PathBuf, stem: String },
    #[error("no certificate named {0:?} in this PKI")]
    UnknownLeaf(String),
}

fn generate_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate { what: what.to_string(), source }
}

impl ClusterPki {
    /// A fresh CA and every leaf the spec implies.
    pub fn generate(spec: &ClusterSpec) -> Result<ClusterPki, PkiError> {
        let now = OffsetDateTime::now_utc();
        let ca_key = KeyPair::generate().map_err(generate_err("CA key"))?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn(&format!("{} kubernetes CA", spec.name), Some("kthw"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        ca_params.not_before = now - BACKDATE;
        ca_params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        let ca_cert = ca_params.self_signed(&ca_key).map_err(generate_err("CA certificate"))?;
        let ca = CertKey { cert_pem: ca_cert.pem(), key_pem: ca_key.serialize_pem() };
        let issuer = Issuer::new(ca_params, ca_key);

        let leaves = profiles(spec)
            .into_iter()
            .map(|p| issue(&p, &issuer, now).map(|ck| (p.stem, ck)))
            .collect::<Result<_, _>>()?;

        let sa = KeyPair::generate().map_err(generate_err("service account key"))?;
        let service_account = ServiceAccountKey { private_pem: sa.serialize_pem(), public_pem: sa.public_key_pem() };
        Ok(ClusterPki { ca, leaves, service_account })
    }

    /// A leaf by file stem, e.g. `"admin"` or `kubelet_stem("worker-node-1")`.
    pub fn leaf(&self, stem: &str) -> Result<&CertKey, PkiError> {
        self.leaves.get(stem).ok_or_else(|| PkiError::UnknownLeaf(stem.to_string()))
    }
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn issue(p: &Profile, issuer: &Issuer<'_, KeyPair>, now: OffsetDateTime) -> Result<CertKey, PkiError> {
    let what = format!("{} certificate", p.stem);
    let key = KeyPair::generate().map_err(|source| PkiError::Generate { what: what.clone(), source })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&p.common_name, p.organization.as_deref());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = match p.usage {
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(LEAF_VALIDITY_DAYS);
    for name in &p.dns_names {
        let ia5 = name.clone().try_into().map_err(|source| PkiError::Generate { what: what.clone(), source })?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    params.subject_alt_names.extend(p.ip_addresses.iter().copied().map(SanType::IpAddress));
    let cert = params.signed_by(&key, issuer).map_err(|source| PkiError::Generate { what, source })?;
    Ok(CertKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

#[cfg(test)]
pub(crate) mod test_tools;
#[cfg(test)]
mod tests;
