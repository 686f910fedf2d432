"""Alert thresholds the grader applies on top of the protocol's dose rules (which live in
protocols/<study>.yaml). What the safety desk must see at once, whatever the protocol says."""

LAB_GRADE_ALERT_MIN = 3  # CTCAE grade >= 3 laboratory abnormality
AE_GRADE_ALERT_MIN = 3  # CTCAE grade >= 3 adverse event
IRAE_GRADE_ALERT_MIN = 2  # immune-related AE grade >= 2: toripalimab withhold territory (label)
SAE_REPORTING_HOURS = 24  # investigator -> sponsor (ICH E6(R2) 4.11.1; dose_rules.md section 3)
