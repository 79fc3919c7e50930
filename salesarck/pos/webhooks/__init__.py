"""POS webhooks: verification, the receiver service, raw storage and the processor."""
