{
  description = "Marks you \"in a meeting\" on Mattermost while your webcam is in use";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      cargoToml = lib.importTOML ./Cargo.toml;

      # Only what the build and its tests read (package-sources.txt, which .ci/nix-sandbox copies, builds and
      # tests exactly as this package does): editing the flake or CI scripts does not rebuild.
      sourcePaths = lib.pipe (builtins.readFile ./package-sources.txt) [
        (lib.splitString "\n")
        (map lib.trim)
        (lib.filter (line: line != "" && !lib.hasPrefix "#" line))
        (map (relative: ./. + "/${relative}"))
      ];
      src = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.unions sourcePaths;
      };

      evalCheck =
        pkgs: file:
        let
          failures = (import ./nixos-module/${file} { inherit (pkgs) lib; }).failures;
        in
        if failures == [ ] then
          pkgs.runCommand "mm-status-sync-${lib.removeSuffix ".nix" file}" { } "touch $out"
        else
          throw "nixos-module/${file}: ${builtins.concatStringsSep "; " failures}";

      package =
        {
          lib,
          rustPlatform,
          installShellFiles,
          python3,
          util-linux,
        }:
        rustPlatform.buildRustPackage {
          pname = cargoToml.package.name;
          inherit (cargoToml.package) version;
          inherit src;
          # Crates come from their Cargo.lock checksums: no vendor hash to maintain (and no git dependencies).
          cargoLock.lockFile = ./Cargo.lock;
          # The man page, generated from the key table and committed (dist/mm-status-sync.1): `man mm-status-sync`.
          nativeBuildInputs = [ installShellFiles ];
          postInstall = "installManPage dist/mm-status-sync.1";
          # The end-to-end tests run the fake camera holders under python3 and signal with kill(1)
          # (util-linux, which also has prlimit for the full-disk tests).
          nativeCheckInputs = [
            python3
            util-linux
          ];
          # Tests built as `cargo test` builds them (CI runs them so): fat LTO for every test binary would take
          # far longer, and the release profile's panic=abort does not apply to tests anyway.
          checkType = "debug";
          # The check phase runs as an unprivileged build user, in its own PID namespace, without network
          # besides loopback. .ci/nix-sandbox reproduces it and checks every name below still is a test.
          checkFlags = [
            # --skip matches exact names, not substrings.
            "--exact"
            # Needs root: starts a scanner as another uid with chosen capabilities (setpriv). As the build
            # user it could only report that it checked nothing.
            "--skip=less_privileged_readers_skip_what_they_cannot_read"
            # Need root: run a holder, the scanner or the daemon as another uid (setpriv).
            "--skip=an_unprivileged_scanner_finds_its_own_camera_held_by_a_thread_after_the_main_thread_exited"
            "--skip=own_non_dumpable_processes_are_named_apart_from_other_users"
            # Need root: mknod of character device nodes (cameras and sound nodes), and for the first two a node
            # another user may not watch.
            "--skip=a_replugged_camera_is_watched_again_once_udev_opens_it_up"
            "--skip=refused_watch_retries_do_not_allocate"
            "--skip=microphones_start_and_end_meetings_with_cameras_or_alone"
            "--skip=scan_says_camera_or_microphone_and_exits_0_only_when_one_counts"
            "--skip=only_capture_nodes_are_microphones"
            "--skip=a_node_reached_through_another_root_is_matched_by_device_number"
            # Needs man-db to render the man page, which the package does not need; CI's cargo test renders it.
            "--skip=man_page_renders_and_lists_every_key"
            # Sleeps through a 300 s lease at the server's one-minute cadence: five minutes of a package build
            # spent waiting. CI's cargo test and its aarch64 run keep it.
            "--skip=a_meeting_ending_between_the_servers_rounded_lapse_and_the_end_sent_restores_exactly"
          ];
          meta = {
            inherit (cargoToml.package) description;
            license = lib.licenses.mit;
            mainProgram = "mm-status-sync";
            platforms = lib.platforms.linux;
          };
        };
    in
    {
      overlays.default = final: _prev: { mm-status-sync = final.callPackage package { }; };

      packages = forAllSystems (
        pkgs:
        {
          default = pkgs.callPackage package { };
          # Fully static (musl, static-pie): copy anywhere. pkgsCross.musl64 would give a dynamic musl binary.
          static = pkgs.pkgsStatic.callPackage package { };
        }
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          # The aarch64 static binary cross-built on a PC (aarch64-unknown-linux-musl, static): the same
          # binary as packages.aarch64-linux.static without an ARM builder. pkgsStatic on top of the
          # cross set keeps the build tools native and makes the target static musl.
          static-aarch64 = pkgs.pkgsCross.aarch64-multiplatform.pkgsStatic.callPackage package { };
        }
      );

      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nixos-module ];
          services.mm-status-sync.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };

      # Home Manager: the user service, for Nix users on any distribution (see nixos-module/home-manager.nix).
      homeManagerModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nixos-module/home-manager.nix ];
          services.mm-status-sync.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        static = self.packages.${pkgs.stdenv.hostPlatform.system}.static;
        nixos = pkgs.testers.runNixOSTest (import ./nixos-module/test.nix { inherit self; });
        # The units the modules yield, checked without a VM (nixos-module/eval-test.nix and
        # home-manager-eval-test.nix, which also run offline with only nixpkgs' lib: .ci/packaging-checks).
        module-eval = evalCheck pkgs "eval-test.nix";
        home-manager-eval = evalCheck pkgs "home-manager-eval-test.nix";
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.shellcheck
            pkgs.nixfmt-tree
            (pkgs.python3.withPackages (python: [
              python.jsonschema
              python.pyyaml
            ]))
          ];
        };
      });
    };
}
