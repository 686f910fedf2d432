"""Why each decision in force stands: a subject's state, told against the protocol. Pure."""

from typing import Any

from services.ctcae_grader.rules_engine import creatinine_clearance
from services.ctcae_grader.state import PatientState
from shared.labs import LAB_DEFINITIONS, display_unit
from shared.protocol import Protocol


def explain(protocol: Protocol, state: PatientState) -> dict[str, Any]:
    rules = {rule.id: rule for rule in protocol.rules}
    clearance = creatinine_clearance(state)
    return {
        "subject_id": state.subject_id,
        "baseline": {
            "site_id": state.site_id,
            "sex": state.sex,
            "age_at_enrolment": state.age_at_enrolment,
            "weight_kg": state.weight_kg,
            "height_cm": state.height_cm,
            "baseline_creatinine_umol_l": state.baseline_creatinine_umol_l,
            "liver_metastases": state.liver_metastases,
            "platinum": state.platinum,
        },
        "treatment": {
            "cycle": state.cycle,
            "cycle_started_on": state.cycle_started_on,
            "delays": state.delays,
            "creatinine_clearance_ml_min": None if clearance is None else round(clearance, 1),
        },
        "drugs": {
            drug.value: _drug(protocol, state, drug, rules) for drug in protocol.regimen.drugs
        },
        "rules_in_force": [
            {
                "rule": rule_id,
                "since_cycle": cycle,
                "description": rules[rule_id].description,
                "source": rules[rule_id].source,
                "status": rules[rule_id].status.value,
            }
            for rule_id, cycle in sorted(state.active_rules.items())
            if rule_id in rules
        ],
        "latest_labs": {
            LAB_DEFINITIONS[test].label: {
                "value": f"{lab.comparator or ''}{lab.value:g} {display_unit(lab.unit)}".strip(),
                "visit": lab.visit.label if lab.visit else None,
                "collected_at": lab.collected_at,
            }
            for test, lab in sorted(state.labs.items())
        },
        "abnormal_grades": {term: g for term, g in sorted(state.lab_grades.items()) if g},
        "immune_related_events": [
            {"term": term, "onset": onset, "worst_grade": grade}
            for (term, onset), grade in sorted(state.irae_events.items())
        ],
        "adverse_events": {
            term: {"grade": ae.grade, "immune_related": ae.immune_related, "serious": ae.serious}
            for term, ae in sorted(state.adverse_events.items())
        },
    }


def _drug(protocol: Protocol, state: PatientState, drug, rules) -> dict[str, Any]:
    platinum = protocol.regimen.platinum
    if drug in platinum and state.platinum is not None and drug.value != state.platinum.value:
        return {"status": "not given (other platinum agent)"}
    regimen = protocol.regimen.drugs[drug]
    level = state.dose_level(drug)
    dose = f"{regimen.dose_levels[min(level, len(regimen.dose_levels) - 1)]:g} {regimen.unit}"
    if drug in state.discontinued:
        return {"status": "discontinued", "dose_level": level}
    held_by = sorted(state.holds.get(drug, ()))
    if held_by:
        return {
            "status": "held",
            "dose_level": level,
            "dose": dose,
            "held_by": [
                {"rule": r, "why": rules[r].description, "source": rules[r].source}
                for r in held_by
                if r in rules
            ],
        }
    return {"status": "given", "dose_level": level, "dose": dose}
