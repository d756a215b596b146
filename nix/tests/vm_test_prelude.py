# Type stubs for the globals the NixOS test driver gives a testScript, so that CI can run mypy on
# nix/tests/vm.nix's script the way the driver does (it refuses scripts that fail type checking).
from contextlib import AbstractContextManager


class Machine:
    def succeed(self, *commands: str, timeout: int | None = None) -> str:
        raise NotImplementedError

    def fail(self, *commands: str, timeout: int | None = None) -> str:
        raise NotImplementedError

    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        raise NotImplementedError

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: int = 900) -> None:
        raise NotImplementedError

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: int = 900) -> None:
        raise NotImplementedError

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        raise NotImplementedError


machine = Machine()


def subtest(name: str) -> AbstractContextManager[None]:
    raise NotImplementedError
