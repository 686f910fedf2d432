"""Dosing formulas the protocol rules use. Pure functions; sources in each docstring."""

from shared.events import Sex

MAX_GFR_FOR_CARBOPLATIN = 125.0  # mL/min cap (FDA; dose_rules.md CB-3, S15)


def cockcroft_gault(age_years: float, weight_kg: float, creatinine_mg_dl: float, sex: Sex) -> float:
    """Creatinine clearance in mL/min: (140 - age) x weight / (72 x SCr mg/dL), x 0.85 for women.
    Source: Cockcroft & Gault 1976, as quoted in dose_rules.md CB-2 (S15, S39)."""
    clearance = (140 - age_years) * weight_kg / (72 * creatinine_mg_dl)
    return clearance * 0.85 if sex is Sex.FEMALE else clearance


def calvert_dose_mg(target_auc: float, gfr_ml_min: float) -> float:
    """Carboplatin dose in mg = AUC x (GFR + 25), GFR capped at 125 mL/min.
    Source: Calvert formula, dose_rules.md CB-1 and CB-3 (S15)."""
    return target_auc * (min(gfr_ml_min, MAX_GFR_FOR_CARBOPLATIN) + 25)
