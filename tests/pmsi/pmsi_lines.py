"""Hand-made RHS lines and the size of the shared synthetic fixture (imported by the tests)."""
from __future__ import annotations

from diagnosenet.pmsi.rhs import format_line

PATIENTS = 300
SEED = 11

#: a valid one-week stay: entry on Monday 7 January 2019 (ISO week 2), one DAS, CdARR and CCAM act
BASE = {
    "finess": "060780000", "format_version": "M05", "stay_number": "1234567", "admin_number": "201900000001",
    "reserved": "", "birth_date": "15031940", "sex": "2", "postcode": "06100", "hospitalisation_type": "1",
    "entry_date": "07012019", "entry_mode": "7", "provenance": "1", "exit_date": "", "exit_mode": "",
    "destination": "", "week": "022019", "presence_weekdays": "11111", "presence_weekend": "11", "unit": "0101",
    "unit_authorisation": "51A", "surgery_date": "", "fpp": "Z501", "mmp": "M161", "ae": "",
    "dep_dressing": "2", "dep_locomotion": "3", "dep_feeding": "1", "dep_continence": "1",
    "dep_behaviour": "1", "dep_communication": "2",
    "das": ("I10",), "cdarr": (("21", "KMA+", 3),), "ccam": (("DEQP003", "0", "1", 1),),
}


def base_line(**changes) -> str:
    return format_line({**BASE, **changes})
