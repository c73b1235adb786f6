"""Home devices (issue 19): a blood-pressure cuff or glucose meter's cloud posts readings to
``POST /hooks/device/<connector>``, HMAC-signed; each measurement becomes a ``vitals.reading`` event."""

from carepath.plugins.hookspecs import hookimpl


@hookimpl
def carepath_connectors():
    from carepath.connectors.device.connector import DeviceConnector

    return [DeviceConnector]


@hookimpl
def carepath_web_routes():
    """``/hooks/device/<name>``: verified (signature and time) before the body is parsed; bounded by the guard."""
    from carepath.plugins.web import callback_router

    return [callback_router("device")]
