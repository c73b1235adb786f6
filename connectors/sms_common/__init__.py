"""What the Chinese SMS connectors share: template maps, segment counting, reply keywords,
the send/lookup/callback flow (:class:`SmsChannel`) and the emulator plumbing."""
