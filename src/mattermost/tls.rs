//! The certificates the client trusts, gathered by hand because attohttpc's ring feature loads none: the system
//! bundle, the built-in Mozilla roots when the system has none, and the user's `ca-file` for a private CA. Also turns
//! rustls failures into sentences a user can act on.

use std::path::Path;

use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Every root certificate to hand to attohttpc, each one known to be accepted by rustls (attohttpc fails the whole
/// handshake on a single certificate it cannot use).
pub(super) fn root_certificates(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut roots = system_roots();
    if roots.is_empty() {
        log::info!("no usable system root certificates, trusting the built-in Mozilla roots");
        roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec();
    }
    if let Some(path) = ca_file {
        roots.extend(read_ca_file(path)?);
    }
    Ok(roots)
}

/// The system bundle (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set), minus what rustls cannot use as a trust anchor.
fn system_roots() -> Vec<CertificateDer<'static>> {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        log::warn!("reading system root certificates: {error}");
    }
    let mut vetting = RootCertStore::empty();
    let total = loaded.certs.len();
    let usable: Vec<_> = loaded.certs.into_iter().filter(|cert| vetting.add(cert.clone()).is_ok()).collect();
    if usable.len() < total {
        log::debug!("skipped {} of {total} system root certificates that rustls cannot use", total - usable.len());
    }
    usable
}

/// The PEM certificates in the user's `ca-file`: all of them must be usable, and there must be at least one.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("ca-file {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca-file {shown}: not a valid PEM file: {e}"))?;
    if certs.is_empty() {
        return Err(format!("ca-file {shown}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" blocks)"));
    }
    let mut vetting = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        vetting
            .add(cert.clone())
            .map_err(|e| format!("ca-file {shown}: certificate {} cannot be used as a root: {e}", i + 1))?;
    }
    Ok(certs)
}

/// Why a TLS connection failed, in words that point at the fix.
pub(super) fn describe_tls_error(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "tls: certificate not trusted (UnknownIssuer); for a private CA set ca-file".into()
        }
        rustls::Error::InvalidCertificate(
            e @ (CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }),
        ) => format!("tls: certificate not valid for this host name ({e})"),
        rustls::Error::InvalidCertificate(
            e @ (CertificateError::Expired | CertificateError::ExpiredContext { .. }),
        ) => format!("tls: certificate expired ({e})"),
        rustls::Error::InvalidCertificate(e) => format!("tls: invalid certificate ({e:?})"),
        other => format!("tls: {other}"),
    }
}
