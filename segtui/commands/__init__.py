"""The `segtui` commands: one small function per command; `segtui.cli` parses and dispatches to them.

Every module here imports its heavy dependencies inside the functions so that `segtui --help` stays fast.
"""
