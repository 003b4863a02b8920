"""The AsyncOS appliance protocol: SSH CLI session, typed commands, pure parsers."""
