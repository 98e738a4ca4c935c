//! Keeps the packaging in step with the binary: the list of configuration keys comes from
//! `mm-status-sync config --keys`, and every place that lists keys (the example config, the NixOS module, the snap
//! hook, the README's key table) must name exactly those. A key added to the binary and forgotten in one of them,
//! or a key invented there, fails here.
//!
//! Documented exceptions:
//! - The NixOS module has no `token` or `token-file` setting: a setting would put the secret (or a path the
//!   module must pass as a credential) in the world-readable Nix store, so both go through its `tokenFile` option.
//! - The snap hook handles `token` separately (it goes to a 0600 file named by `token-file`), and also accepts the
//!   original project's `sleep-seconds` as the old name of `interval`; the README may list that alias too.
//! - `MM_STATUS_SYNC_CONFIG` names the config file and is not a key; `MM_STATUS_SYNC_KEY` is the documentation's
//!   placeholder for "any key".

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::BIN;

const LEGACY_SNAP_KEYS: [&str; 1] = ["sleep-seconds"];

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    fs::read_to_string(repo_path(relative)).unwrap_or_else(|error| panic!("cannot read {relative}: {error}"))
}

fn binary_keys() -> BTreeSet<String> {
    let output = Command::new(BIN).args(["config", "--keys"]).env_clear().output().unwrap();
    assert!(
        output.status.success(),
        "mm-status-sync config --keys failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let keys: BTreeSet<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(keys.contains("url") && keys.contains("token"), "config --keys printed no plausible key list: {keys:?}");
    keys
}

/// `MM_STATUS_SYNC_USER_ID` -> `user-id`
fn key_of_variable(name: &str) -> Option<String> {
    let rest = name.strip_prefix("MM_STATUS_SYNC_")?;
    Some(rest.to_ascii_lowercase().replace('_', "-"))
}

/// The config file format: one pair of matching single or double quotes around a value is not part of it.
fn unquote(value: &str) -> &str {
    let bytes = value.as_bytes();
    if bytes.len() >= 2 && (bytes[0] == b'"' || bytes[0] == b'\'') && bytes[0] == bytes[bytes.len() - 1] {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// Fails with both differences spelled out, naming the place that drifted.
fn assert_same_keys(place: &str, found: &BTreeSet<String>, expected: &BTreeSet<String>) {
    let missing: Vec<&String> = expected.difference(found).collect();
    let invented: Vec<&String> = found.difference(expected).collect();
    assert!(
        missing.is_empty() && invented.is_empty(),
        "{place} is out of step with `mm-status-sync config --keys`: missing {missing:?}, not a key {invented:?}"
    );
}

/// The example config: every key commented out as `#MM_STATUS_SYNC_KEY=default`, each after a line explaining it.
fn example_config() -> BTreeMap<String, String> {
    let text = read("dist/config.env");
    let lines: Vec<&str> = text.lines().collect();
    let mut defaults = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        if line.starts_with("MM_STATUS_SYNC_") {
            panic!("dist/config.env line {} is not commented out: {line}", index + 1);
        }
        let Some((name, value)) = line.strip_prefix('#').and_then(|l| l.split_once('=')) else { continue };
        let Some(key) = key_of_variable(name) else { continue };
        let explanation = index.checked_sub(1).map(|i| lines[i]).unwrap_or_default();
        assert!(
            explanation.starts_with("# ") && explanation.len() > 10,
            "dist/config.env: {key} has no explanation on the line before it"
        );
        assert!(defaults.insert(key.clone(), unquote(value).to_owned()).is_none(), "dist/config.env lists {key} twice");
    }
    defaults
}

/// `mm-status-sync config` output: key -> (value, where it came from).
fn effective_config(command: &mut Command) -> BTreeMap<String, (String, String)> {
    let output = command.output().unwrap();
    assert!(output.status.success(), "mm-status-sync config failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut settings = BTreeMap::new();
    let mut source = String::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        if let Some(from) = line.strip_prefix("# from:") {
            source = from.trim().to_owned();
        } else if let Some((key, value)) =
            line.split_once('=').and_then(|(name, value)| Some((key_of_variable(name)?, value)))
        {
            settings.insert(key, (unquote(value).to_owned(), source.clone()));
        }
    }
    settings
}

#[test]
fn example_config_lists_every_key() {
    let found: BTreeSet<String> = example_config().into_keys().collect();
    assert_same_keys("dist/config.env", &found, &binary_keys());
}

#[test]
fn example_config_shows_the_binarys_defaults() {
    let example = example_config();
    // url and token are given so that the configuration is complete; state-dir's default depends on the
    // environment ($STATE_DIRECTORY, $SNAP_DATA, XDG), which the example explains in words.
    let not_compared = ["url", "token", "state-dir"];
    let effective = effective_config(
        Command::new(BIN)
            .arg("config")
            .env_clear()
            .env("MM_STATUS_SYNC_URL", "https://mattermost.example.com")
            .env("MM_STATUS_SYNC_TOKEN", "packaging-test-token"),
    );
    for (key, example_value) in example.iter().filter(|(key, _)| !not_compared.contains(&key.as_str())) {
        let (value, source) = effective.get(key).map(|(v, s)| (v.as_str(), s.as_str())).unwrap_or(("", "default"));
        assert_eq!(source, "default", "{key} did not come from the default");
        assert_eq!(example_value, value, "dist/config.env shows a default for {key} that the binary does not have");
    }
}

/// Setting names in the NixOS and Home Manager modules (both take them from `nixos-module/settings.nix`): each is
/// declared as `NAME = setting TYPE DESCRIPTION`, possibly with `setting` on the next line (nixfmt's layout).
fn nixos_module_settings() -> BTreeSet<String> {
    let text = read("nixos-module/settings.nix");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut names = BTreeSet::new();
    for (index, line) in lines.iter().enumerate() {
        let Some((name, rest)) = line.split_once(" =") else { continue };
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') || name.is_empty() {
            continue;
        }
        let rest = rest.trim();
        let declared_here = rest.starts_with("setting ");
        let declared_below = rest.is_empty() && lines.get(index + 1).is_some_and(|next| next.starts_with("setting "));
        if declared_here || declared_below {
            names.insert(name.to_owned());
        }
    }
    names
}

#[test]
fn nixos_module_offers_every_key_as_a_setting() {
    let mut expected = binary_keys();
    expected.remove("token");
    expected.remove("token-file");
    assert_same_keys("nixos-module/settings.nix settings", &nixos_module_settings(), &expected);
}

#[test]
fn snap_hook_maps_every_key() {
    let hook = read("snap/hooks/configure");
    let start = hook.find("plain_keys='").expect("snap/hooks/configure has no plain_keys list") + "plain_keys='".len();
    let end = start + hook[start..].find('\'').expect("plain_keys list is not closed");
    let mut found: BTreeSet<String> = hook[start..end].split_whitespace().map(str::to_owned).collect();
    assert!(hook.contains("token=$(snapctl get token)"), "the hook no longer reads the token");
    found.insert("token".to_owned());
    for legacy in LEGACY_SNAP_KEYS {
        assert!(hook.contains(&format!("snapctl get {legacy}")), "the hook no longer accepts the original {legacy}");
    }
    assert_same_keys("snap/hooks/configure", &found, &binary_keys());
}

/// Names in backticks in the first column of README.md's tables that list at least one key.
fn readme_table_keys(readme: &str, keys: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut table = BTreeSet::new();
    for line in readme.lines().chain([""]) {
        let line = line.trim();
        if let Some(row) = line.strip_prefix('|') {
            let first = row.split('|').next().unwrap_or_default().trim();
            let name = first.strip_prefix('`').and_then(|f| f.strip_suffix('`'));
            if let Some(name) = name.filter(|n| !n.is_empty() && !n.contains('`')) {
                table.insert(name.to_owned());
            }
        } else {
            if table.iter().any(|name| keys.contains(name)) {
                found.append(&mut table);
            }
            table.clear();
        }
    }
    found
}

#[test]
fn readme_key_table_lists_every_key() {
    let keys = binary_keys();
    let readme = fs::read_to_string(repo_path("README.md")).unwrap_or_else(|error| {
        panic!(
            "README.md at the repository root cannot be read ({error}): it must have a markdown table whose first \
             column holds every configuration key in backticks"
        )
    });
    let mut found = readme_table_keys(&readme, &keys);
    assert!(!found.is_empty(), "README.md has no table whose first column lists configuration keys in backticks");
    for legacy in LEGACY_SNAP_KEYS {
        found.remove(legacy);
    }
    assert_same_keys("README.md key table", &found, &keys);
}

#[test]
fn readme_table_reader_takes_only_key_tables() {
    let keys: BTreeSet<String> = ["url", "interval"].map(str::to_owned).into();
    let readme = "| command | what |\n|---|---|\n| `scan` | one scan |\n\n| key | default |\n|---|---|\n| `url` | |\n| \
                  `interval` | 300 |\n| `sleepy` | x |\n";
    let found = readme_table_keys(readme, &keys);
    assert_eq!(found, ["interval", "sleepy", "url"].map(str::to_owned).into());
}

#[test]
fn snap_version_is_the_crate_version() {
    let cargo = read("Cargo.toml");
    let crate_version = cargo.lines().find_map(|l| l.strip_prefix("version = ")).map(|v| v.trim_matches('"'));
    let snap = read("snap/snapcraft.yaml");
    let snap_version = snap.lines().find_map(|l| l.strip_prefix("version: ")).map(|v| v.trim_matches('"'));
    assert!(crate_version.is_some(), "no version in Cargo.toml");
    assert_eq!(snap_version, crate_version, "snap/snapcraft.yaml version differs from Cargo.toml");
}

/// `[Service]` directive names of a unit file.
fn service_directives(relative: &str) -> BTreeSet<String> {
    let text = read(relative);
    let section = text.split("[Service]").nth(1).unwrap_or_else(|| panic!("{relative} has no [Service]"));
    let section = section.split("\n[").next().unwrap_or_default();
    section
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(name, _)| name.trim().to_owned())
        .collect()
}

#[test]
fn nixos_system_service_is_as_hardened_as_the_dist_unit() {
    // The system service is assembled from the module's own hardening and the parts both modules share.
    let module = read("nixos-module/default.nix") + &read("nixos-module/unit.nix");
    let files = "nixos-module/default.nix and unit.nix";
    for directive in service_directives("dist/systemd/mm-status-sync.service") {
        if directive == "Environment" {
            for variable in ["MM_STATUS_SYNC_CONFIG =", "MM_STATUS_SYNC_TOKEN_FILE ="] {
                assert!(module.contains(variable), "{files} do not set {variable}");
            }
        } else {
            assert!(module.contains(&format!("{directive} =")), "{files} lack {directive}");
        }
    }
}

#[test]
fn user_unit_uses_no_namespacing() {
    // In a user manager these need a user namespace, inside which even the user's own fds are unreadable.
    let namespacing = [
        "PrivateTmp",
        "PrivateDevices",
        "PrivateNetwork",
        "PrivateUsers",
        "PrivateMounts",
        "PrivateIPC",
        "ProtectSystem",
        "ProtectHome",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectHostname",
        "ProtectClock",
        "ProtectProc",
        "ProcSubset",
        "ReadOnlyPaths",
        "ReadWritePaths",
        "InaccessiblePaths",
        "TemporaryFileSystem",
        "BindPaths",
        "BindReadOnlyPaths",
        "RootDirectory",
        "DynamicUser",
    ];
    let directives = service_directives("dist/systemd/user/mm-status-sync.service");
    let used: Vec<&&str> = namespacing.iter().filter(|d| directives.contains(**d)).collect();
    assert!(used.is_empty(), "dist/systemd/user/mm-status-sync.service uses namespacing options {used:?}");
}

fn files_under(relative: &str, files: &mut Vec<PathBuf>) {
    let path = repo_path(relative);
    if path.is_file() {
        files.push(path);
        return;
    }
    let Ok(entries) = fs::read_dir(&path) else { return };
    for entry in entries {
        let name = entry.unwrap().file_name();
        files_under(&format!("{relative}/{}", name.to_string_lossy()), files);
    }
}

#[test]
fn every_variable_named_in_packaging_is_a_key() {
    let keys = binary_keys();
    let mut files = Vec::new();
    for place in ["dist", "snap", "nixos-module", "flake.nix"] {
        files_under(place, &mut files);
    }
    assert!(files.len() >= 8, "packaging files not found: {files:?}");
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        for (offset, _) in text.match_indices("MM_STATUS_SYNC_") {
            let name: String = text[offset..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let key = key_of_variable(&name).unwrap_or_default();
            if key.is_empty() || key == "config" || key == "key" {
                continue;
            }
            assert!(keys.contains(&key), "{} names {name}, which is no key", file.display());
        }
    }
}

#[test]
fn template_units_are_the_plain_units_per_instance() {
    for (plain, template, config, token) in [
        (
            "dist/systemd/mm-status-sync.service",
            "dist/systemd/mm-status-sync@.service",
            "Environment=MM_STATUS_SYNC_CONFIG=/etc/mm-status-sync/%i.env",
            "LoadCredential=token:/etc/mm-status-sync/%i.token",
        ),
        (
            "dist/systemd/user/mm-status-sync.service",
            "dist/systemd/user/mm-status-sync@.service",
            "Environment=MM_STATUS_SYNC_CONFIG=%E/mm-status-sync/%i.env",
            "Environment=MM_STATUS_SYNC_TOKEN_FILE=%E/mm-status-sync/%i.token",
        ),
    ] {
        // Same directives, so the same hardening; only the per-instance paths differ.
        assert_eq!(service_directives(template), service_directives(plain), "{template} differs from {plain}");
        let text = read(template);
        for line in [config, token, "StateDirectory=mm-status-sync/%i"] {
            assert!(text.lines().any(|l| l == line), "{template} lacks {line}");
        }
    }
}
