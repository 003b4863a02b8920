"""segtui: rolling AsyncOS upgrades for a fleet of Cisco Secure Email Gateways."""

__version__ = "0.1.0"
