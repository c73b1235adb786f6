"""Sources of small plugins the tests install (see the ``install_plugin`` fixture)."""

from typing import Callable

InstallPlugin = Callable[..., str]  # install_plugin(name, source, *, version=..., dist=...) -> module name

GOOD_PLUGIN = '''
    from typing import ClassVar
    from carepath.plugins import Channel, SendResult, hookimpl

    class PagerChannel(Channel):
        type_name: ClassVar[str] = "pager"
        address_kind: ClassVar[str] = "none"

        def send(self, message):
            return SendResult.sent("pager-1")

    @hookimpl
    def carepath_connectors():
        return [PagerChannel]

    @hookimpl
    def carepath_templates():
        return {"page": {"body": "paged"}}
'''

BROKEN_PLUGIN = "import acme_sdk_that_is_not_installed\n"
