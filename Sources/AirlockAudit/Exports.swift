// The audit log records events: whoever uses it uses their vocabulary too.
@_exported import AirlockEvents
