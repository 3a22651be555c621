"""Human-readable reports of fusion plans: `write_plan_html` draws a plan as one self-contained HTML page."""

from .plan_html import write_plan_html

__all__ = ["write_plan_html"]
