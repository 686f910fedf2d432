"""One absolute neutrophil count, 0.9 x 10^9/L at cycle 2 day 1 (collected 2026-11-20 07:30 in
Guangzhou), as HL7 v2 and FHIR R4 senders send it: the messages the interoperability tests post."""

COLLECTED = "2026-11-20T07:30:00+08:00"


def hl7_oru(
    patient_id: str,
    *,
    facility: str = "GZ01-LIS",
    value: str = "0.9",
    control_id: str = "MSG00402",
) -> bytes:
    """An ORU^R01 from `facility` (MSH-4: which site sent it). PID-5 carries a name, as real
    messages do: ingest must never read it."""
    segments = [
        f"MSH|^~\\&|LIS|{facility}|SAFETYMON|NCT05173246|202611200815+0800||ORU^R01|{control_id}"
        "|P|2.5.1|||||CHN|UNICODE UTF-8",
        f"PID|1||{patient_id}^^^GZH^MR||TEST^PATIENT||19600101|M",
        "PV1|1|O|ONC||||||||||||||||C2D1",
        f"OBR|1|P-{control_id}|F-{control_id}|57021-8^CBC W Auto Differential panel^LN"
        "|||202611200730+0800",
        f"OBX|1|NM|751-8^Neutrophils [#/volume] in Blood by Automated count^LN||{value}|10*9/L"
        "|1.8-6.3|L|||F|||202611200730+0800",
    ]
    return "\r".join(segments).encode()


def fhir_observation(
    patient_id: str, *, value: float | None = 0.9, identifier: str | None = None
) -> dict:
    """A laboratory Observation (no valueQuantity when `value` is None); with `identifier`, the
    lab's own identifier, which the event id then comes from."""
    observation: dict = {
        "resourceType": "Observation",
        "id": f"anc-{patient_id}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": COLLECTED,
        "valueQuantity": {
            "value": value,
            "unit": "10^9/L",
            "system": "http://unitsofmeasure.org",
            "code": "10*9/L",
        },
        "referenceRange": [{"low": {"value": 1.8}, "high": {"value": 6.3}}],
        "extension": [
            {
                "url": "https://safetymon.example/fhir/StructureDefinition/study-visit",
                "valueString": "C2D1",
            }
        ],
    }
    if value is None:
        del observation["valueQuantity"]
    if identifier is not None:
        observation["identifier"] = [{"system": "urn:lab", "value": identifier}]
    return observation
