//! What a [`Config`] describes, built in one place: the device set and process filter for detection, the client
//! and the server backend for the sync. The daemon (at start and on reload) and the one-shot commands (`scan`,
//! `check`, `restore`) all build them here, so they cannot drift apart.

use crate::config::{Config, ServerSettings};
use crate::detect::{DeviceSet, Filter};
use crate::mattermost::{ApiError, Client, Timeouts};
use crate::sync::{Backend, DryRun, Server};

/// The devices to watch: the cameras (`devices`) and the microphones (`microphones`, empty when off).
pub(crate) fn device_set(config: &Config) -> DeviceSet {
    DeviceSet::new(config.devices.clone()).with_microphones(config.microphones.clone())
}

/// Which holders count.
pub(crate) fn filter(config: &Config) -> Filter {
    Filter {
        ignore_processes: config.ignore_processes.clone(),
        require_streaming_for: config.require_streaming_for.clone(),
    }
}

/// The client for a configured server.
pub(crate) fn client(server: &ServerSettings) -> Result<Client, ApiError> {
    Client::new(&server.url, server.token.clone(), server.ca_file.as_deref(), Timeouts::default())
}

/// The server side for a configuration: the real client, or the dry-run simulation.
pub(crate) fn backend(config: &Config) -> Result<Box<dyn Backend>, String> {
    if config.dry_run {
        return Ok(Box::new(DryRun::default()));
    }
    let server = config.server.as_ref().ok_or("missing url: the daemon needs a server unless dry-run is set")?;
    let client = client(server).map_err(|e| e.to_string())?;
    let backend = Server::new(client, server.user_id.clone());
    Ok(Box::new(match &server.token_file {
        // After a refused token the file is read again before each retry: a rotated token is used at once.
        Some(path) => {
            let (url, ca_file) = (server.url.clone(), server.ca_file.clone());
            let make_client = move |token| Client::new(&url, token, ca_file.as_deref(), Timeouts::default());
            backend.with_token_file(path.clone(), server.token.clone(), Box::new(make_client))
        }
        None => backend,
    }))
}
