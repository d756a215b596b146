# A stand-in for nixpkgs, small enough to write by hand, for `nix flake check --no-build` on machines that
# cannot fetch nixpkgs (see .ci/nix-checks.sh):
#
#   nix flake check --no-build --no-write-lock-file \
#     --override-input nixpkgs path:./nix/tests/stub-nixpkgs
#
# It offers only what this repository's flake uses, and its functions check their arguments the way the
# real ones would fail at build time (names of arguments and OCI config keys, files that must exist).
# It proves the wiring, output names and paths; not that real nixpkgs builds the result.
{
  description = "stub nixpkgs for offline flake checks";

  outputs =
    { self }:
    let
      lib = import ./lib.nix;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs systems (system: import ./pkgs.nix { inherit lib system; });
    };
}
