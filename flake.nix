{
  description = "flightdeck: a reproducible streaming flight-data platform kit";

  # Every input is locked by rev and narHash in flake.lock (`cargo xtask lint` checks it).
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";
    flake-utils.url = "github:numtide/flake-utils";
    crane.url = "github:ipetkov/crane";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      flake-utils,
      crane,
      rust-overlay,
    }:
    flake-utils.lib.eachSystem [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ] (
      system:
      let
        pkgs = import nixpkgs {
          inherit system;
          overlays = [ (import rust-overlay) ];
        };
        inherit (pkgs) lib;

        # The toolchain of rust-toolchain.toml (1.95.0 with rustfmt and clippy): one
        # version on every machine, in CI and in the packages below.
        toolchain = pkgs.rust-bin.fromRustupToolchainFile ./rust-toolchain.toml;
        craneLib = (crane.mkLib pkgs).overrideToolchain (_: toolchain);

        # NB: Terraform is unfree in nixpkgs (BSL) and not in its binary cache. OpenTofu
        # reads the same modules, versions.tf and providers, and answers as `terraform`.
        terraform = pkgs.writeShellScriptBin "terraform" ''exec ${pkgs.opentofu}/bin/tofu "$@"'';

        # What the crates read at build time: sources, migrations (sqlx::migrate!), the
        # services' JSON test fixtures (include_str!), the xtask's fixtures and snapshots, and
        # the catalogue of upstream schemas the lint compiles in (include_str!).
        src = lib.fileset.toSource {
          root = ./.;
          fileset = lib.fileset.unions [
            (craneLib.fileset.commonCargoSources ./.)
            ./infrastructure/upstream.toml
            ./services/processor/migrations
            (lib.fileset.fileFilter (file: file.hasExt "json") ./services)
            ./xtask/fixtures
            (lib.fileset.fileFilter (file: file.hasExt "snap") ./.)
          ];
        };

        # rdkafka-sys builds librdkafka from source with its mklove `./configure`, whose
        # `#!/usr/bin/env bash` does not exist in the build sandbox: patch the shebangs
        # once, in the vendored copy of the crate.
        cargoVendorDir = craneLib.vendorCargoDeps {
          inherit src;
          overrideVendorCargoPackage =
            p: drv:
            if p.name == "rdkafka-sys" then
              drv.overrideAttrs (old: {
                nativeBuildInputs = (old.nativeBuildInputs or [ ]) ++ [
                  pkgs.bash
                  pkgs.python3
                ];
                preInstall = (old.preInstall or "") + ''
                  patchShebangs librdkafka
                '';
              })
            else
              drv;
        };

        commonArgs = {
          inherit src cargoVendorDir;
          pname = "flightdeck";
          version = "0.1.0";
          strictDeps = true;
          # librdkafka (bundled, static): configure + make, perl and python for its
          # build scripts, zlib for compression. sqlx and reqwest use rustls: no OpenSSL.
          nativeBuildInputs = with pkgs; [
            pkg-config
            perl
            python3
            gnumake
          ];
          buildInputs = [ pkgs.zlib ] ++ lib.optionals pkgs.stdenv.hostPlatform.isDarwin [ pkgs.libiconv ];
          SQLX_OFFLINE = "true";
        };

        # One build of every dependency, shared by the packages and the checks.
        cargoArtifacts = craneLib.buildDepsOnly commonArgs;

        service =
          name:
          craneLib.buildPackage (
            commonArgs
            // {
              inherit cargoArtifacts;
              pname = name;
              cargoExtraArgs = "--locked -p ${name}";
              # The tests run in `checks.nextest`.
              doCheck = false;
              meta.mainProgram = name;
            }
          );
      in
      {
        packages = rec {
          producer = service "producer";
          processor = service "processor";
          default = pkgs.symlinkJoin {
            name = "flightdeck";
            paths = [
              producer
              processor
            ];
          };
        };

        checks = {
          inherit (self.packages.${system}) producer processor;
          fmt = craneLib.cargoFmt { inherit src; };
          clippy = craneLib.cargoClippy (
            commonArgs
            // {
              inherit cargoArtifacts;
              cargoClippyExtraArgs = "--workspace --all-targets --locked -- -D warnings";
            }
          );
          # The services' unit and integration tests against a real PostgreSQL and Apache
          # Kafka (KRaft) started by the tests themselves. The xtask's own tests build
          # images and read git, so they run in `cargo xtask ci` (ci.yaml).
          nextest = craneLib.cargoNextest (
            commonArgs
            // {
              inherit cargoArtifacts;
              cargoNextestExtraArgs = "--locked -p flight-model -p producer -p processor";
              nativeCheckInputs = [
                pkgs.postgresql
                pkgs.apacheKafka
              ];
              FLIGHTDECK_BROKER = "kafka";
            }
          );
        };

        # Every tool the xtask calls, at the versions of flake.lock (`cargo xtask doctor`
        # lists them). Docker itself comes from the host, CI runner or devcontainer.
        devShells.default = craneLib.devShell {
          inputsFrom = [ self.packages.${system}.producer ];
          packages = [
            terraform
          ]
          ++ (with pkgs; [
            k3d
            kubectl
            kubernetes-helm
            skopeo
            postgresql
            apacheKafka
            cargo-insta
            cargo-nextest
            sqlx-cli
            python3
            git
            # The e2e's browser test and the lint's alerting-rule tests (promtool).
            chromium
            chromedriver
            prometheus
          ]);
          # NB: with `kafka-server-start.sh` on PATH the local stack runs Apache Kafka and
          # never installs tansu.
          SQLX_OFFLINE = "true";
          # NB: the local Superset's pinned manylinux wheels (pandas, pyarrow) link
          # libstdc++ and zlib, which Nix's Python does not find on its own.
          LD_LIBRARY_PATH = pkgs.lib.makeLibraryPath [
            pkgs.stdenv.cc.cc.lib
            pkgs.zlib
          ];
        };

        # NB: `nixfmt-rfc-style` is now only an alias of `nixfmt` (the RFC 166 style).
        formatter = pkgs.nixfmt;
      }
    );
}
