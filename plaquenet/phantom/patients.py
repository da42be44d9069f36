"""FAKE identifying data of the phantom's patients, as a hospital's DICOM
headers carry it: names, birth dates, hospitals, doctors. The import must
strip all of it, and the tests prove it does."""

from __future__ import annotations

import dataclasses
import datetime
from typing import List, Sequence

import numpy as np

SURNAMES = (("Kowalski", "Kowalska"), ("Nowak", "Nowak"), ("Wisniewski", "Wisniewska"), ("Wojcik", "Wojcik"),
            ("Kaminski", "Kaminska"), ("Lewandowski", "Lewandowska"), ("Zielinski", "Zielinska"),
            ("Szymanski", "Szymanska"), ("Dabrowski", "Dabrowska"), ("Kozlowski", "Kozlowska"),
            ("Jankowski", "Jankowska"), ("Mazur", "Mazur"))  # (male, female)
NAMES = {"M": ("Jan", "Piotr", "Krzysztof", "Andrzej", "Tomasz", "Pawel", "Michal", "Marcin"),
         "F": ("Anna", "Maria", "Katarzyna", "Malgorzata", "Agnieszka", "Barbara", "Ewa", "Joanna")}
HOSPITALS = ("Szpital Wojewodzki nr 2", "Uniwersytecki Szpital Kliniczny", "Centrum Medyczne Zdrowie")
FIRST_STUDY, STUDY_DAYS = datetime.date(2015, 1, 1), 730  # studies over two years
AGE_YEARS = (19, 66)  # §2: "aged 19 to 66"


@dataclasses.dataclass
class FakePatient:
    """FAKE identifying data, as a hospital's DICOM headers carry it: the import must strip all of it."""

    folder: str  # e.g. "Kowalska_Anna": a name, on purpose, so ids never come from folders
    name: str  # DICOM PN, "Kowalska^Anna"
    patient_id: str
    birth_date: str
    sex: str
    institution: str
    referring_physician: str
    accession: str
    study_date: str


def fake_patients(seed: int, n_patients: int) -> List[FakePatient]:
    """Seeded fake identities of the phantom's patients, folder names all different."""
    people: List[FakePatient] = []
    for i in range(n_patients):
        people.append(_fake_patient(seed, i, [p.folder for p in people]))
    return people


def _fake_patient(seed: int, patient: int, taken: Sequence[str]) -> FakePatient:
    rng = np.random.default_rng([seed, patient, 1])
    sex = "FM"[(seed + patient) % 2]  # §2: fifty men and fifty women
    for attempt in range(100):
        surname = SURNAMES[rng.integers(len(SURNAMES))][sex == "F"]
        first = str(rng.choice(NAMES[sex]))
        folder = f"{surname}_{first}" + (f"_{attempt}" if attempt >= 50 else "")
        if folder not in taken:
            break
    study = FIRST_STUDY + datetime.timedelta(days=int(rng.integers(STUDY_DAYS)))
    youngest, oldest = AGE_YEARS
    birth = study - datetime.timedelta(days=int(rng.integers(youngest * 365, oldest * 365)))
    doctor = f"{SURNAMES[rng.integers(len(SURNAMES))][0]}^{rng.choice(NAMES['M'])}"
    return FakePatient(
        folder=folder, name=folder.replace("_", "^", 1), patient_id=f"{rng.integers(10 ** 10, 10 ** 11)}",
        birth_date=birth.strftime("%Y%m%d"), sex=sex, institution=str(rng.choice(HOSPITALS)),
        referring_physician=doctor, accession=f"A{rng.integers(10 ** 7, 10 ** 8)}",
        study_date=study.strftime("%Y%m%d"),
    )
