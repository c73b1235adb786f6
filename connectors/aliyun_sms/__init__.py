"""The ``aliyun-sms`` channel: Alibaba Cloud SMS (dysmsapi 2017-05-25), its receipts, replies and emulator."""
