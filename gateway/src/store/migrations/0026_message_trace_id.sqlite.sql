-- The OpenTelemetry trace id of the request that brought a customer message, and of the answer
-- turn that wrote a bot message (null without `telemetry.otlp_endpoint`): the console shows it so
-- "why did the bot say this" can be followed in the tracing backend.
ALTER TABLE messages ADD COLUMN trace_id TEXT;
