"""Analysis of stored traces: critical path, baselines and anomalies, alerts, retention, coverage audit,
metrics from spans. See docs/analysis.md for the methods and their measured defaults."""

from .anomalies import Anomaly, detect
from .audit import AuditReport, Finding, audit
from .baselines import Baseline, BaselineConfig
from .critical_path import CriticalPath, Step, critical_path, critical_span_ids
from .retention import BackgroundRetention, PruneReport, RetentionPolicy, prune

__all__ = [
    "Anomaly", "AuditReport", "BackgroundRetention", "Baseline", "BaselineConfig", "CriticalPath", "Finding",
    "PruneReport", "RetentionPolicy", "Step", "audit", "critical_path", "critical_span_ids", "detect", "prune",
]
