DROP TRIGGER endpoint_tokens_notify_truncate ON endpoint_tokens;
DROP TRIGGER endpoint_tokens_notify_delete ON endpoint_tokens;
DROP TRIGGER endpoint_tokens_notify_update ON endpoint_tokens;
DROP FUNCTION endpoint_tokens_notify();
