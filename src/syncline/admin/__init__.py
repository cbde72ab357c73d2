"""The admin dashboard's side of Syncline: system functions and the health view."""

from syncline.admin._functions import SYSTEM_FUNCTIONS, SYSTEM_TABLES
from syncline.admin._health import HealthMonitor

__all__ = ["SYSTEM_FUNCTIONS", "SYSTEM_TABLES", "HealthMonitor"]
