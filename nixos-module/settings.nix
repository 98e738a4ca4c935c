# The daemon's configuration as Nix options, shared by the NixOS module (default.nix) and the Home Manager module
# (home-manager.nix) so both offer the same names and types: the `settings` keys, the per-server options
# (settings, tokenFile, environmentFile, extraArgs) that `instances.<name>` repeats, the options around them
# (enable, package, instances), their assertions, and the rendering of `settings` into the daemon's own
# KEY=VALUE config file. The units built from them are unit.nix's.
#
# Every key defaults to null, "not set": it is left out of the file and the binary's own default applies, so the
# modules cannot drift from the binary (`mm-status-sync config` shows the value in effect and where it came from).
{ lib }:
let
  inherit (lib) mkOption types;

  # One option per key of the binary (`mm-status-sync config --keys`; tests/packaging.rs compares the lists).
  setting =
    type: description:
    mkOption {
      type = types.nullOr type;
      default = null;
      description = description + " Unset (null): the daemon's default.";
    };

  line = types.singleLineStr;

  leaseSeconds = types.addCheck types.ints.unsigned (n: n == 0 || (n >= 300 && n <= 604800)) // {
    description = "0, or an integer between 300 and 604800 (both inclusive)";
  };

  variableName = key: "MM_STATUS_SYNC_" + lib.toUpper (builtins.replaceStrings [ "-" ] [ "_" ] key);

  renderValue =
    value:
    if builtins.isBool value then
      lib.boolToString value
    else if builtins.isList value then
      lib.concatStringsSep "," value
    else
      toString value;

  # As the daemon's `config` command writes values: double quotes, inside which the file format reads `\"` and
  # `\\` as a quote and a backslash (and nothing else). A value cannot hold a line break (singleLineStr).
  quote = text: "\"" + lib.escape [ "\\" "\"" ] text + "\"";

  settingsOption =
    file:
    mkOption {
      default = { };
      description = ''
        Configuration keys of mm-status-sync (as in `mm-status-sync config --keys`), written to ${file}; a change
        reloads the daemon. A key left unset (null) is not written, so the daemon's own default applies. Keys
        not declared here are passed through as they are (the daemon refuses unknown keys). The token is not a
        setting: use `tokenFile` (or `environmentFile`).
      '';
      type = types.submodule {
        freeformType = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.bool
              types.int
              line
              (types.listOf line)
            ]
          )
        );
        options = {
          devices = setting (types.listOf line) "Device path patterns; `*` matches any run of characters except `/`.";
          microphones =
            setting (types.listOf line)
              "Microphone device path patterns, such as /dev/snd/pcmC*D*c; empty: microphones are not watched.";
          ignore-processes =
            setting (types.listOf line)
              "Process names (as in /proc/PID/comm) that never count as using a camera.";
          require-streaming-for =
            setting (types.listOf line)
              "Process names that count only while they stream (`*` = every process).";
          start-delay =
            setting (types.ints.between 0 3600)
              "Seconds a camera must stay in use before the meeting starts.";
          end-delay =
            setting (types.ints.between 0 86400)
              "Seconds all cameras must stay free before the meeting ends.";
          interval = setting (types.ints.between 10 86400) "Seconds between safety full scans.";
          state-dir =
            setting line
              "Where the status backup is kept (absolute). The services set $STATE_DIRECTORY, which the daemon uses when this is unset.";
          log = setting (types.enum [
            "auto"
            "syslog"
            "stderr"
          ]) "Where logs go.";
          log-level = setting (types.enum [
            "error"
            "warn"
            "info"
            "debug"
          ]) "Least severe messages logged.";
          dry-run = setting types.bool "Never call the server, only log what would be done.";
          url =
            setting line
              "Server base URL, https:// (http:// only for a loopback address). Required unless dry-run.";
          user-id = setting line "Whose status to manage (the daemon's default is the token's own user).";
          meeting-message = setting line "Text appended to the current custom status during a meeting.";
          meeting-emoji = setting line "Custom status emoji (a name) during a meeting.";
          meeting-status = setting (types.enum [
            "dnd"
            "away"
            "online"
            "offline"
            "keep"
          ]) "Availability during a meeting.";
          ignore-if-offline = setting types.bool "Do nothing while the user is offline.";
          ca-file = setting line "PEM file with extra trusted CA certificates, for a server with a private CA.";
          lease =
            setting leaseSeconds
              "Seconds ahead for the meeting status's expiry and the DND end, in case the daemon dies (0 disables).";
          on-meeting-start = setting line "Command run when a meeting starts.";
          on-meeting-end = setting line "Command run when a meeting ends.";
        };
      };
    };

  notInStore = path: path == null || !lib.hasPrefix builtins.storeDir path;
in
rec {
  inherit variableName;

  # The config file's text: one `MM_STATUS_SYNC_KEY="value"` line per key that is set.
  #
  # Not pkgs.formats.keyValue: its value type accepts what this file cannot hold (multi-line strings, floats),
  # the quoting above would have to be given to it as mkKeyValue anyway, and it needs pkgs, which the
  # evaluation tests stand in for with nixpkgs' lib alone. lib.generators.toKeyValue is what it renders with.
  render =
    settings:
    lib.generators.toKeyValue {
      mkKeyValue = key: value: "${variableName key}=${quote (renderValue value)}";
    } (lib.filterAttrs (_: value: value != null) settings);

  # The options of one server's daemon: the top level of both modules, and each `instances.<name>`.
  # `file` names the config file in descriptions; `tokenNote` says how the token reaches the daemon.
  serverOptions =
    { file, tokenNote }:
    {
      settings = settingsOption file;

      tokenFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/mm-status-sync-token";
        description = ''
          File holding the Mattermost personal access token. Not a Nix path: it must stay out of the Nix store.
          ${tokenNote}
        '';
      };

      environmentFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = ''
          File of `MM_STATUS_SYNC_KEY=value` lines for the service's environment (read at start only). Not a
          Nix path: it may hold the token, so it must stay out of the Nix store.
        '';
      };

      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "--log-level=debug" ];
        description = "Extra arguments after `mm-status-sync run` (flags win over the config file; read at start only).";
      };
    };

  # The options both modules declare under services.mm-status-sync (the NixOS module adds `mode`): `enable`
  # and `package`, the options of the unnamed server, and `instances` of more. `instances` gives the option's
  # example and description, which name each module's own paths.
  moduleOptions =
    {
      pkgs,
      file,
      tokenNote,
      instances,
    }:
    let
      server = serverOptions { inherit file tokenNote; };
    in
    {
      enable = lib.mkEnableOption "mm-status-sync, which marks you \"in a meeting\" on Mattermost while a camera is in use";

      package = lib.mkPackageOption pkgs "mm-status-sync" { };

      instances = mkOption {
        default = { };
        inherit (instances) example description;
        type = types.attrsOf (types.submodule { options = server; });
      };
    }
    // server;

  # The assertions on one server's options; `prefix` is the option path shown in messages.
  assertions = prefix: server: [
    {
      assertion = notInStore server.tokenFile;
      message = "${prefix}.tokenFile must not be in the Nix store, which everyone can read";
    }
    {
      assertion = notInStore server.environmentFile;
      message = "${prefix}.environmentFile must not be in the Nix store, which everyone can read";
    }
    {
      assertion = !(server.settings ? token) && !(server.settings ? token-file);
      message = "${prefix}.settings must not hold the token: use ${prefix}.tokenFile";
    }
    {
      assertion = server.settings.url != null || server.settings.dry-run == true;
      message = "${prefix}.settings.url is required unless settings.dry-run is true";
    }
  ];

  # Instance names become unit names and paths (mm-status-sync-NAME, mm-status-sync/NAME.env).
  instanceNameAssertion = prefix: name: {
    assertion = builtins.match "[A-Za-z0-9_][A-Za-z0-9_.-]*" name != null;
    message = "${prefix}.instances.\"${name}\": an instance name may hold only letters, digits, `_`, `.` and `-`";
  };
}
