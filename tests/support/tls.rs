//! A throw-away certificate authority and server certificate for HTTPS tests, so the client's `ca-file` handling and
//! certificate checks run against a real TLS handshake on 127.0.0.1 without touching the system trust store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA (written as PEM to `ca_file()`) and a server certificate it signed, removed from disk on drop.
pub struct TestTls {
    dir: PathBuf,
    ca_file: PathBuf,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_cert_pem: String,
    server_config: Arc<rustls::ServerConfig>,
}

impl TestTls {
    /// A CA and a server certificate valid for `127.0.0.1` and `localhost`.
    pub fn new() -> TestTls {
        TestTls::build(&["127.0.0.1", "localhost"], false)
    }

    /// A server certificate for other names only (e.g. `["other.example"]`): a client connecting to 127.0.0.1 must
    /// refuse it even though it trusts the CA.
    pub fn for_names(names: &[&str]) -> TestTls {
        TestTls::build(names, false)
    }

    /// A server certificate for `127.0.0.1` and `localhost` that expired in 2001.
    pub fn expired() -> TestTls {
        TestTls::build(&["127.0.0.1", "localhost"], true)
    }

    /// The CA certificate as a PEM file, for the client's `ca-file` setting.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The CA certificate in PEM form.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server (leaf) certificate in PEM form: trusting it alone is not trusting the CA.
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// What `FakeMattermost::start_tls` serves with.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config.clone()
    }

    /// A client configuration that trusts only this CA (for tests that talk to the fake without the project's
    /// client).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("test CA is a valid trust anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    fn build(names: &[&str], expired: bool) -> TestTls {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "mm-status-sync test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("generate server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut server_params = CertificateParams::new(names).expect("server certificate names");
        server_params.distinguished_name.push(DnType::CommonName, "mm-status-sync fake Mattermost");
        if expired {
            server_params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            server_params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let server_cert = server_params.signed_by(&server_key, &issuer).expect("sign server certificate");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone()], key)
            .expect("server certificate and key match");

        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mm-status-sync-test-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create TLS temp dir");
        let ca_file = dir.join("ca.pem");
        let ca_pem = ca_cert.pem();
        std::fs::write(&ca_file, &ca_pem).expect("write CA PEM");
        TestTls {
            dir,
            ca_file,
            ca_pem,
            ca_der: ca_cert.der().clone(),
            server_cert_pem: server_cert.pem(),
            server_config: Arc::new(server_config),
        }
    }
}

impl Default for TestTls {
    fn default() -> TestTls {
        TestTls::new()
    }
}

impl Drop for TestTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
