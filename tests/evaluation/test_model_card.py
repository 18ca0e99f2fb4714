"""The model card every fit writes: placeholders or the user's text, the cohort's own counts,
subgroups with n and a CI, no text of the cohort, under the folder's checksums; `polymodal card`
adds the test split; the report shows the card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from polymodal import modalities
from polymodal.checksums import verify_checksums
from polymodal.cli import app
from polymodal.data.manifest import load_cohort
from polymodal.data.spec import load_spec
from polymodal.errors import ModelError, SpecError
from polymodal.evaluation import BootstrapResult, EvaluationResult, MetricCI, modality_subsets
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.evaluation.report import build_report
from polymodal.model_card.config import PLACEHOLDERS, CardConfig
from polymodal.predictor import Predictor
from polymodal.training.fit import fit
from training.conftest import tiny_cohort, tiny_config, tiny_run

RARE_WORD = "zyxquorbital"  # planted in every note: must never reach the card
INTENDED = "Flags adults at risk of the demo outcome for review by a ward physician."
runner = CliRunner()


@pytest.fixture(scope="module")
def planted_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny cohort with a rare word in every note and a `ward` column outside the spec."""
    folder = Path(
        shutil.copytree(
            tiny_cohort(tmp_path_factory.getbasetemp()).parent,
            tmp_path_factory.mktemp("planted") / "cohort",
        )
    )
    manifest = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    manifest["note"] = manifest["note"].where(
        manifest["note"] == "", manifest["note"] + f" {RARE_WORD}."
    )
    manifest["ward"] = ["east" if i % 2 else "west" for i in range(len(manifest))]
    manifest.to_csv(folder / "manifest.csv", index=False)
    return folder / "spec.yaml"


@pytest.fixture(scope="module")
def card_model(planted_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch fit on labs + note with a written `card:` section and two subgroup columns."""
    card = (
        f"card={{intended_use: '{INTENDED}', limitations: 'One synthetic cohort.', "
        "subgroups: [ward, {column: age, bins: [60]}], n_boot: 50, min_patients: 2}"
    )
    run = tiny_config("train.max_epochs=1", "model.modalities=[labs, note]", card)
    out = tmp_path_factory.mktemp("card_run")
    fit(load_spec(planted_cohort), out, run, progress=False)
    return out / "model"


def _card(folder: Path) -> tuple[dict, str]:
    payload = json.loads((folder / "model_card.json").read_text(encoding="utf-8"))
    return payload, (folder / "model_card.md").read_text(encoding="utf-8")


def test_a_fit_without_card_section_lists_every_placeholder(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tiny_run(tmp_path_factory.getbasetemp()) / "model"
    payload, markdown = _card(folder)
    assert payload["unfilled"] == list(PLACEHOLDERS)
    for text in PLACEHOLDERS.values():
        assert text in markdown
    assert "This card is not finished" in markdown
    assert {r["item"]: r["status"] for r in payload["tripod"]}["3c"] == "user"


def test_the_users_text_replaces_its_placeholder(card_model: Path) -> None:
    payload, markdown = _card(card_model)
    assert INTENDED in markdown and "One synthetic cohort." in markdown
    assert PLACEHOLDERS["intended_use"] not in markdown
    assert payload["unfilled"] == ["intended_users", "out_of_scope", "ethical_considerations"]
    assert {r["item"]: r["status"] for r in payload["tripod"]}["3c"] == "covered"


def test_prevalence_and_missingness_are_the_cohorts(card_model: Path, planted_cohort: Path) -> None:
    cohort = _card(card_model)[0]["cohort"]
    manifest = pd.read_csv(planted_cohort.parent / "manifest.csv", dtype=str, keep_default_na=False)
    spec = load_spec(planted_cohort)
    for split, rows in manifest.groupby("split"):
        assert cohort["rows"][split] == len(rows)
        assert cohort["patients"][split] == rows["patient_id"].nunique()
        counts = rows["label"].value_counts()
        assert cohort["labels"]["label"][split] == {k: int(v) for k, v in counts.items()}
        assert cohort["label_shares"]["label"][split]["1"] == pytest.approx(
            counts["1"] / len(rows), abs=1e-4
        )
        for name, cfg in spec.modalities.items():
            columns = modalities.get(cfg.kind).columns(cfg)
            blank = int((rows[columns].apply(lambda c: c.str.strip()) == "").all(axis=1).sum())
            assert cohort["missing"][name][split]["rows"] == blank, (name, split)


def test_subgroups_list_each_level_with_n_and_an_interval(card_model: Path) -> None:
    payload, markdown = _card(card_model)
    found = payload["validation"]["subgroups"]
    assert set(found) == {"ward", "age"}
    assert set(found["ward"]["levels"]) == {"east", "west"}
    assert set(found["age"]["levels"]) <= {"<60", "≥60", "(missing)"}
    n_val = payload["validation"]["targets"]["label"]["n"]
    assert sum(level["label"]["n"] for level in found["ward"]["levels"].values()) == n_val
    for level in found["ward"]["levels"].values():
        auroc = level["label"]["metrics"]["auroc"]
        assert level["label"]["n"] > 0 and level["label"]["patients"] > 0
        assert auroc["low"] is not None and auroc["low"] <= auroc["point"] <= auroc["high"]
    assert "By `ward`:" in markdown and "| east | label |" in markdown


def test_no_text_of_the_cohort_is_in_the_card(card_model: Path, planted_cohort: Path) -> None:
    payload, markdown = _card(card_model)
    manifest = pd.read_csv(planted_cohort.parent / "manifest.csv", dtype=str, keep_default_na=False)
    text = markdown + json.dumps(payload, ensure_ascii=False)
    assert RARE_WORD not in text
    assert not any(sample in text for sample in manifest["sample_id"])
    assert not any(patient in text for patient in manifest["patient_id"])


def test_the_card_is_covered_by_the_folder_checksums(card_model: Path, tmp_path: Path) -> None:
    verify_checksums(card_model)
    listed = json.loads((card_model / "checksums.json").read_text())["files"]
    assert {"model_card.md", "model_card.json"} <= set(listed)
    copy = Path(shutil.copytree(card_model, tmp_path / "model"))
    (copy / "model_card.md").write_text("# a better-looking card\n")
    with pytest.raises(ModelError, match=r"model_card\.md"):
        verify_checksums(copy)


def test_polymodal_card_adds_the_test_split_on_every_subset_and_the_report_shows_it(
    card_model: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(card_model, tmp_path / "model"))
    result = runner.invoke(app, ["card", str(folder), "--n-boot", "20", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    verify_checksums(folder)
    payload, markdown = _card(folder)
    test = payload["evaluations"]["test"]
    assert [s["modalities"] for s in test["subsets"]] == [["labs", "note"], ["labs"], ["note"]]
    assert set(test["subgroups"]["ward"]["levels"]) == {"east", "west"}
    assert (
        "## Performance on the test split" in markdown
        and "## Subgroups on the test split" in markdown
    )
    assert {r["item"]: r["status"] for r in payload["tripod"]}["25"] == "covered"

    predictor = Predictor.load(folder)
    cohort = load_cohort(predictor.loaded.spec)
    evaluation = evaluate_model(predictor, cohort, n_boot=10, progress=False)
    html = build_report({"card": evaluation}, tmp_path / "report", clinical_figures=False)
    page = html.read_text(encoding="utf-8")
    assert "<summary>Model card: card (not finished:" in page and INTENDED in page
    assert "Performance on the test split</h4>" in page and RARE_WORD not in page


def test_a_subgroup_column_the_manifest_lacks_is_refused_before_training(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    spec = load_spec(tiny_cohort(tmp_path_factory.getbasetemp()))
    run = tiny_config("train.max_epochs=1", "card={subgroups: [ward_of_origin]}")
    with pytest.raises(SpecError, match="ward_of_origin"):
        fit(spec, tmp_path / "run", run, progress=False)
    assert not (tmp_path / "run" / "model").exists()


def test_card_section_refuses_unsorted_bins_and_repeated_columns() -> None:
    with pytest.raises(ValidationError, match="bins must increase"):
        CardConfig.model_validate({"subgroups": [{"column": "age", "bins": [65, 40]}]})
    with pytest.raises(ValidationError, match="listed twice"):
        CardConfig.model_validate({"subgroups": ["sex", "sex"]})
    assert CardConfig.model_validate({"subgroups": ["sex"]}).subgroups[0].column == "sex"


def _evaluation(modalities: tuple[str, ...], folder: Path) -> EvaluationResult:
    result = EvaluationResult(settings={"model": str(folder), "split": "test", "n_boot": 50})
    for subset in modality_subsets(modalities):
        ci = BootstrapResult(n_boot=50, level=0.95, n_samples=40, n_groups=30)
        ci["auroc"] = MetricCI(0.6 + 0.05 * len(subset), 0.5, 0.9, 50)
        result.add("label", "binary", subset, ci)
    return result


@pytest.mark.parametrize(
    ("names", "opened"), [(("a", "b", "c"), True), (("a", "b", "c", "d"), False)]
)
def test_a_long_subset_table_starts_collapsed_and_a_folder_without_card_says_so(
    names: tuple[str, ...], opened: bool, tmp_path: Path
) -> None:
    html = build_report(
        {"old": _evaluation(names, tmp_path / "no_such_model")},
        tmp_path / "report",
        clinical_figures=False,
    ).read_text(encoding="utf-8")
    n = 2 ** len(names) - 1
    summary = f"<summary>AUROC per modality subset, models side by side ({n} subsets)</summary>"
    assert ("<details open>" + summary in html) is opened
    assert ("<details>" + summary in html) is not opened
    assert "No model card for old:" in html and "has no model card" in html
