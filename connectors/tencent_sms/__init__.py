"""The ``tencent-sms`` channel: Tencent Cloud SMS (2021-01-11), its receipts, replies and emulator."""
