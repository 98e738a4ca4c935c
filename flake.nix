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

      # Only what the build and its tests read: editing the flake or CI scripts does not rebuild.
      # .cargo/ stays out: its musl settings are for builds outside Nix (pkgsStatic brings its own).
      src = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.unions (
          [
            ./Cargo.toml
            ./Cargo.lock
            ./src
          ]
          # tests/packaging.rs and tests/snap_hook.rs read these.
          ++ map lib.fileset.maybeMissing [
            ./tests
            ./benches
            ./README.md
            ./dist
            ./snap
            ./nixos-module
          ]
        );
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
        { lib, rustPlatform }:
        rustPlatform.buildRustPackage {
          pname = cargoToml.package.name;
          inherit (cargoToml.package) version;
          inherit src;
          # Crates come from their Cargo.lock checksums: no vendor hash to maintain (and no git dependencies).
          cargoLock.lockFile = ./Cargo.lock;
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

      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage package { };
        # Fully static (musl, static-pie): copy anywhere. pkgsCross.musl64 would give a dynamic musl binary.
        static = pkgs.pkgsStatic.callPackage package { };
      });

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
