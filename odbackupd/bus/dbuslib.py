"""The D-Bus library, imported in one place: dbus-fast, or dbus-next where only it is
installed (the same API)."""
# ruff: noqa: F401
try:
    from dbus_fast import BusType, DBusError, Message, MessageType, Variant
    from dbus_fast.aio import MessageBus
    from dbus_fast.constants import NameFlag, PropertyAccess, RequestNameReply
    from dbus_fast.service import ServiceInterface, dbus_property, method, signal
except ImportError:  # pragma: no cover - exercised only where dbus-fast is missing
    from dbus_next import BusType, DBusError, Message, MessageType, Variant  # type: ignore
    from dbus_next.aio import MessageBus  # type: ignore
    from dbus_next.constants import NameFlag, PropertyAccess, RequestNameReply  # type: ignore
    from dbus_next.service import ServiceInterface, dbus_property, method, signal  # type: ignore
