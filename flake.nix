{
  description = "plex-oidc: an OpenID Connect provider that signs people in with Plex";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      linuxSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      systems = linuxSystems ++ [
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forSystems = systems: f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = final: prev: {
        plex-oidc = final.callPackage ./nix/package.nix { };
      };

      packages = forSystems systems (
        pkgs:
        let
          plex-oidc = pkgs.callPackage ./nix/package.nix { };
        in
        {
          default = plex-oidc;
          inherit plex-oidc;
          fake-plex = pkgs.callPackage ./nix/fake-plex.nix { inherit plex-oidc; };
        }
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          oci-image = pkgs.callPackage ./nix/oci-image.nix { inherit plex-oidc; };
        }
      );

      # Uses pkgs.plex-oidc when the overlay is applied, else builds this checkout with the system's nixpkgs.
      nixosModules.default = import ./nix/module.nix;

      devShells = forSystems systems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.cargo
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.nixfmt
            pkgs.nodejs
          ];
        };
      });

      formatter = forSystems systems (pkgs: pkgs.nixfmt);

      checks = forSystems linuxSystems (
        pkgs:
        let
          packages = self.packages.${pkgs.stdenv.hostPlatform.system};
        in
        {
          # Builds the release binary and runs `cargo test` in the sandbox.
          package = packages.default;
          inherit (packages) oci-image;
          # Evaluated, not built: a failed assertion stops `nix flake check` before anything builds.
          service-unit = pkgs.writeText "plex-oidc-service-unit.json" (
            builtins.toJSON (import ./nix/tests/service-unit.nix).checks
          );
          vm = import ./nix/tests/vm.nix {
            inherit pkgs;
            module = self.nixosModules.default;
            plex-oidc = packages.default;
            inherit (packages) fake-plex;
          };
        }
      );
    };
}
