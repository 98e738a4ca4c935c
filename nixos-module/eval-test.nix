# Evaluates the NixOS module with nixpkgs' lib alone (no nixpkgs, no VM) in both modes and checks the units it
# yields: ExecStart, ExecReload, the token credential, the capabilities, reload triggers, the assertions, the
# config file (only the keys that are set) and `instances.<name>` (one service, file, token and state dir each).
# The NixOS options the module writes to are declared here (and in eval-stand-ins.nix) as plain stubs, so this
# runs anywhere `lib` does:
#   nix-instantiate --eval --strict --json nixos-module/eval-test.nix --arg lib 'import <nixpkgs.lib checkout>/lib'
# The flake runs it as `checks.<system>.module-eval`. The result is { failures = [ ... ]; units = { ... }; }.
{ lib }:
let
  inherit (lib) types mkOption;
  standIns = import ./eval-stand-ins.nix { inherit lib; };
  inherit (standIns) package binary pkgs failedAssertions asList expect;

  unitValue = types.oneOf [
    types.bool
    types.int
    types.str
    (types.listOf types.str)
  ];
  serviceType = types.submodule {
    options = {
      description = mkOption { type = types.str; default = ""; };
      environment = mkOption { type = types.attrsOf (types.nullOr types.str); default = { }; };
      serviceConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
      reloadTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
      wants = mkOption { type = types.listOf types.str; default = [ ]; };
      after = mkOption { type = types.listOf types.str; default = [ ]; };
      partOf = mkOption { type = types.listOf types.str; default = [ ]; };
    };
  };

  evaluate = standIns.evaluator {
    module = ./default.nix;
    options = {
      environment.etc = standIns.filesOption;
      systemd.services = standIns.unitsOption serviceType;
      systemd.user.services = standIns.unitsOption serviceType;
    };
  };

  base = standIns.server // {
    tokenFile = "/run/secrets/mm-token";
  };
  system = evaluate base;
  user = evaluate (
    base
    // {
      mode = "user";
      extraArgs = [ "--log-level=debug" ];
    }
  );
  noUrl = evaluate (base // { settings = { }; });
  quoting = evaluate (base // { settings.meeting-message = " it's \"a \\ call\""; });

  instances = {
    work = {
      tokenFile = "/run/secrets/mm-work";
      settings.url = "https://work.example.com";
    };
    community = {
      tokenFile = "/run/secrets/mm-community";
      environmentFile = "/run/secrets/mm-community.env";
      settings.url = "https://community.example.org";
      settings.meeting-status = "away";
    };
  };
  # The single instance and two more, in both modes; and instances alone.
  several = evaluate (base // { inherit instances; });
  severalUser = evaluate (base // { mode = "user"; inherit instances; });
  onlyInstances = evaluate { inherit package instances; };
  badName = evaluate { inherit package; instances."../x" = instances.work; };
  instanceInStore = evaluate {
    inherit package;
    instances.work = instances.work // { tokenFile = "/nix/store/44444444444444444444444444444444-token"; };
  };

  sys = system.systemd.services.mm-status-sync.serviceConfig;
  sysUnit = system.systemd.services.mm-status-sync;
  usr = user.systemd.user.services.mm-status-sync.serviceConfig;
  usrUnit = user.systemd.user.services.mm-status-sync;
  configText = builtins.readFile system.environment.etc."mm-status-sync/config.env".source;
  fileOf = config: name: builtins.readFile config.environment.etc."mm-status-sync/${name}".source;
  work = several.systemd.services.mm-status-sync-work;
  community = several.systemd.services.mm-status-sync-community;
in
{
  failures =
    expect "system: module assertions hold" (failedAssertions system == [ ])
    ++ expect "system: Type=notify" (sys.Type == "notify")
    ++ expect "system: ExecStart runs the package's binary" (sys.ExecStart == ''"${binary}" "run"'')
    ++ expect "system: ExecReload sends SIGHUP" (sys.ExecReload == "${pkgs.coreutils}/bin/kill -HUP $MAINPID")
    ++ expect "system: the token is a credential" (asList sys.LoadCredential == [ "token:/run/secrets/mm-token" ])
    ++ expect "system: the daemon reads the credential" (
      sysUnit.environment.MM_STATUS_SYNC_TOKEN_FILE == "%d/token"
    )
    ++ expect "system: the config file is named by MM_STATUS_SYNC_CONFIG" (
      sysUnit.environment.MM_STATUS_SYNC_CONFIG == "/etc/mm-status-sync/config.env"
    )
    ++ expect "system: exactly the two capabilities, ambient and bounding" (
      lib.sort lib.lessThan (asList sys.AmbientCapabilities) == [ "CAP_DAC_READ_SEARCH" "CAP_SYS_PTRACE" ]
      && lib.sort lib.lessThan (asList sys.CapabilityBoundingSet) == [ "CAP_DAC_READ_SEARCH" "CAP_SYS_PTRACE" ]
    )
    ++ expect "system: PrivateUsers=no keeps the capabilities meaningful" (sys.PrivateUsers == false)
    ++ expect "system: StateDirectory, WatchdogSec, Restart=on-failure" (
      sys.StateDirectory == "mm-status-sync" && sys ? WatchdogSec && sys.Restart == "on-failure"
    )
    ++ expect "system: a settings change reloads" (sysUnit.reloadTriggers != [ ] && sysUnit.restartTriggers == [ ])
    ++ expect "system: exactly the settings that are set, in the config file" (
      configText == standIns.serverConfigText
    )
    ++ expect "quotes and backslashes escaped as the daemon reads them" (
      lib.hasInfix ''MM_STATUS_SYNC_MEETING_MESSAGE=" it's \"a \\ call\""'' (fileOf quoting "config.env")
    )
    ++ expect "system: no user service" (!(system.systemd.user.services ? mm-status-sync))
    ++ expect "user: module assertions hold" (failedAssertions user == [ ])
    ++ expect "user: ExecStart with extraArgs" (usr.ExecStart == ''"${binary}" "run" "--log-level=debug"'')
    ++ standIns.extraArgsEscaped evaluate base (
      config: config.systemd.services.mm-status-sync.serviceConfig.ExecStart
    )
    ++ expect "user: ExecReload sends SIGHUP" (usr.ExecReload == "${pkgs.coreutils}/bin/kill -HUP $MAINPID")
    ++ expect "user: started with the graphical session" (usrUnit.wantedBy == [ "graphical-session.target" ])
    ++ expect "user: no credentials, no capabilities, no namespacing" (
      lib.all (option: !(usr ? ${option})) standIns.systemOnly
    )
    ++ expect "user: the token file is read by the daemon" (usrUnit.environment ? MM_STATUS_SYNC_TOKEN_FILE)
    ++ expect "user: no system service" (!(user.systemd.services ? mm-status-sync))
    ++ standIns.storePathsRefused evaluate base
    ++ expect "a url is required" (failedAssertions noUrl != [ ])
    ++ expect "instances: module assertions hold" (failedAssertions several == [ ])
    ++ expect "instances: the single instance keeps its service" (
      several.systemd.services.mm-status-sync.serviceConfig.StateDirectory == "mm-status-sync"
    )
    ++ expect "instances: a service each, with its own config file" (
      work.environment.MM_STATUS_SYNC_CONFIG == "/etc/mm-status-sync/work.env"
      && community.environment.MM_STATUS_SYNC_CONFIG == "/etc/mm-status-sync/community.env"
      && fileOf several "work.env" == "MM_STATUS_SYNC_URL=\"https://work.example.com\"\n"
      && lib.hasInfix "MM_STATUS_SYNC_MEETING_STATUS=\"away\"" (fileOf several "community.env")
    )
    ++ expect "instances: their own token credential and state directory" (
      asList work.serviceConfig.LoadCredential == [ "token:/run/secrets/mm-work" ]
      && asList community.serviceConfig.LoadCredential == [ "token:/run/secrets/mm-community" ]
      && work.serviceConfig.StateDirectory == "mm-status-sync/work"
      && community.serviceConfig.StateDirectory == "mm-status-sync/community"
      && asList community.serviceConfig.EnvironmentFile == [ "/run/secrets/mm-community.env" ]
      && asList work.serviceConfig.EnvironmentFile == [ ]
    )
    ++ expect "instances: as hardened as the single service" (
      removeAttrs work.serviceConfig [ "StateDirectory" "LoadCredential" "EnvironmentFile" ]
      == removeAttrs sys [ "StateDirectory" "LoadCredential" "EnvironmentFile" ]
    )
    ++ expect "instances: a settings change reloads that instance" (
      work.reloadTriggers != [ ] && work.reloadTriggers != community.reloadTriggers
    )
    ++ expect "instances in user mode: user services, the daemon reads its token file" (
      lib.attrNames severalUser.systemd.user.services == [
        "mm-status-sync"
        "mm-status-sync-community"
        "mm-status-sync-work"
      ]
      && severalUser.systemd.services == { }
      && severalUser.systemd.user.services.mm-status-sync-work.environment.MM_STATUS_SYNC_TOKEN_FILE
        == "/run/secrets/mm-work"
      && severalUser.systemd.user.services.mm-status-sync-work.serviceConfig.StateDirectory == "mm-status-sync/work"
    )
    ++ expect "instances without enable: only the instances" (
      failedAssertions onlyInstances == [ ]
      && lib.attrNames onlyInstances.systemd.services == [ "mm-status-sync-community" "mm-status-sync-work" ]
      && lib.attrNames onlyInstances.environment.etc == [ "mm-status-sync/community.env" "mm-status-sync/work.env" ]
    )
    ++ expect "an instance name that is no file name is refused" (failedAssertions badName != [ ])
    ++ expect "an instance's tokenFile in the Nix store is refused" (failedAssertions instanceInStore != [ ])
    ++ expect "nothing enabled, nothing written" (
      (evaluate { inherit package; }).systemd.services == { }
    );

  units = {
    system = sysUnit;
    user = usrUnit;
    inherit work community;
  };
}
