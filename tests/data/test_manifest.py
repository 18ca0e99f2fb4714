"""Manifest loading, cell parsing, path resolution and the split recipe."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from polymodal.data.manifest import load_cohort, parse_number
from polymodal.data.spec import SplitRecipe, parse_spec
from polymodal.data.splits import SplitWarning, assign_splits
from polymodal.errors import ManifestError, ReadError, SpecError


def make_spec(base_dir, **changes):
    data = {
        "manifest": "manifest.csv",
        "id_column": "id",
        "group_column": "patient",
        "split": {"column": "split", "aliases": {"valid": "val"}},
        "targets": {"y": {"kind": "binary", "column": "y"}},
        "modalities": {
            "xray": {"kind": "image", "columns": ["xray"], "path_template": "img/{}.png"},
            "labs": {"kind": "tabular", "numeric": ["age"]},
        },
        **changes,
    }
    return parse_spec(data, base_dir=base_dir)


def write(root, rows, name="manifest.csv"):
    frame = pd.DataFrame(rows)
    path = root / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


ROWS = {
    "id": ["a", "b", "c", "d"],
    "patient": ["p1", "p1", "p2", ""],
    "split": ["train", "train", "valid", "holdout"],
    "y": ["1", "0", "1", "0"],
    "xray": ["a", "", "c", "d"],
    "age": ["007", "", "NA", "41.5"],
}


def test_manifest_read_losslessly_with_split_aliases(tmp_path):
    write(tmp_path, ROWS)
    cohort = load_cohort(make_spec(tmp_path))
    assert len(cohort) == 4
    # Strings stay as written: no "7", no NaN for blanks.
    assert cohort.cell(0, "age") == "007" and cohort.cell(1, "age") == ""
    assert list(cohort.split) == ["train", "train", "val", None]
    assert cohort.unknown_split_values == {3: "holdout"}
    assert list(cohort.ids[cohort.indices("train")]) == ["a", "b"]
    assert list(cohort.rows("val")["id"]) == ["c"]
    # A blank group falls back to the row's id.
    assert list(cohort.groups) == ["p1", "p1", "p2", "d"]
    assert cohort.label(0, "y") == "1"


def test_parquet_manifest_and_override(tmp_path):
    rows = {**ROWS, "age": [7.0, None, float("nan"), 41.5]}
    other = tmp_path / "elsewhere"
    other.mkdir()
    path = write(other, rows, "subset.parquet")
    cohort = load_cohort(make_spec(tmp_path), manifest_override=path)
    assert cohort.manifest_path == path
    assert list(cohort.frame["age"]) == ["7.0", "", "", "41.5"]
    # Files still resolve against the spec's data root, not the override's folder.
    assert cohort.resolve_path("a", "img/{}.png") == tmp_path / "img" / "a.png"


def test_missing_declared_column_names_the_column_the_field_and_what_exists(tmp_path):
    write(tmp_path, {k: v for k, v in ROWS.items() if k != "age"})
    with pytest.raises(ManifestError) as err:
        load_cohort(make_spec(tmp_path))
    message = str(err.value)
    assert "column 'age' (declared by modalities.labs) is not in the manifest" in message
    assert "columns present: id, patient, split, y, xray" in message


def test_missing_and_empty_manifests(tmp_path):
    with pytest.raises(ManifestError, match=r"manifest\.csv: manifest not found; fix 'manifest'"):
        load_cohort(make_spec(tmp_path))
    (tmp_path / "manifest.csv").write_text("id,patient,split,y,xray,age\n")
    with pytest.raises(ManifestError, match="the manifest has a header but no rows"):
        load_cohort(make_spec(tmp_path))
    (tmp_path / "manifest.csv").write_text("")
    with pytest.raises(ManifestError, match=r"the manifest is empty \(no header, no rows\)"):
        load_cohort(make_spec(tmp_path))
    (tmp_path / "manifest.xlsx").write_text("x")
    with pytest.raises(ManifestError, match=r"unsupported manifest format '\.xlsx'"):
        load_cohort(make_spec(tmp_path, manifest="manifest.xlsx"))


def test_parse_number():
    assert parse_number(" 41.5 ") == 41.5
    assert math.isnan(parse_number(""))
    assert math.isnan(parse_number("NA"))
    assert math.isnan(parse_number("-1", missing_values=["-1"]))
    with pytest.raises(ReadError, match="'forty' is not a number"):
        parse_number("forty")
    with pytest.raises(ReadError, match="'inf' is not a finite number"):
        parse_number("inf")


def test_paths_resolve_against_the_root_and_a_bad_template_names_itself(tmp_path):
    root = tmp_path / "cohort"
    root.mkdir()
    write(root, ROWS)
    cohort = load_cohort(make_spec(root))
    assert cohort.resolve_path("sub/../x.png") == root / "sub" / ".." / "x.png"
    assert cohort.resolve_path(str(root / "abs.png")) == root / "abs.png"
    assert cohort.file_paths(1, "xray") == [None]  # blank cell: no file
    assert cohort.file_paths(0, "xray") == [root / "img" / "a.png"]
    with pytest.raises(SpecError, match=re.escape("path_template 'img/{name}.png'")):
        cohort.resolve_path("a", "img/{name}.png")


def test_paths_leaving_the_root_are_refused_unless_the_spec_allows_them(tmp_path):
    root = tmp_path / "cohort"
    root.mkdir()
    write(root, ROWS)
    cohort = load_cohort(make_spec(root))
    outside = tmp_path / "abs" / "x.png"
    for cell, template in (("../../etc/passwd", None), (str(outside), None), ("../../x", "img/{}")):
        with pytest.raises(ReadError) as err:
            cohort.resolve_path(cell, template)
        assert f"lies outside the cohort root {root}" in err.value.reason
        assert "move it inside or set allow_outside_root: true in the spec" in err.value.reason
        assert err.value.path is not None and cell.split("/")[-1] in err.value.path
    # Cells that cannot even be resolved are unreadable files, not a crash.
    with pytest.raises(ReadError, match="no home folder for '~'"):
        cohort.resolve_path("~no_such_user_polymodal/x.png")
    with pytest.raises(ReadError, match="cannot resolve the path"):
        cohort.resolve_path("img/a\x00.png")
    allowed = load_cohort(make_spec(root, allow_outside_root=True))
    assert allowed.resolve_path("../shared/x.png") == root / ".." / "shared" / "x.png"
    assert allowed.resolve_path(str(outside)) == outside


def test_a_symlink_inside_the_root_pointing_outside_is_refused(tmp_path):
    root = tmp_path / "cohort"
    (root / "img").mkdir(parents=True)
    write(root, ROWS)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not yours")
    (root / "img" / "a.png").symlink_to(secret)
    (root / "img" / "inside.png").write_bytes(b"x")
    (root / "img" / "c.png").symlink_to(root / "img" / "inside.png")
    cohort = load_cohort(make_spec(root))
    with pytest.raises(ReadError, match=rf"outside the cohort root .*\(it leads to {secret}\)"):
        cohort.file_paths(0, "xray")
    # A link that stays inside the root is fine.
    assert cohort.file_paths(2, "xray") == [root / "img" / "c.png"]


def test_recipe_split_is_grouped_stratified_seeded_and_near_the_fractions(tmp_path):
    n = 400
    rows = {
        "id": [f"s{i}" for i in range(n)],
        "patient": [f"p{i // 2}" for i in range(n)],
        "y": ["1" if (i // 2) % 4 == 0 else "0" for i in range(n)],
        "xray": [""] * n,
        "age": ["50"] * n,
    }
    write(tmp_path, rows)
    spec = make_spec(
        tmp_path, split={"recipe": {"train": 0.7, "val": 0.15, "test": 0.15, "seed": 3}}
    )
    cohort = load_cohort(spec)
    shares = cohort.split.value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.70, abs=0.02)
    assert shares["val"] == pytest.approx(0.15, abs=0.02)
    assert shares["test"] == pytest.approx(0.15, abs=0.02)
    frame = cohort.frame.assign(split=cohort.split)
    assert frame.groupby("patient")["split"].nunique().max() == 1
    positives = frame[frame["y"] == "1"]["split"].value_counts(normalize=True)
    assert positives["train"] == pytest.approx(0.70, abs=0.05)
    again = load_cohort(spec)
    assert again.split.equals(cohort.split)
    other_seed = make_spec(tmp_path, split={"recipe": {"seed": 4}})
    assert not load_cohort(other_seed).split.equals(cohort.split)


def test_a_repeated_column_name_is_refused_naming_the_columns(tmp_path):
    """pandas would read the first 'age' and rename the second 'age.1' without a word."""
    (tmp_path / "manifest.csv").write_text(
        "id,patient,split,y,xray,age, age\na,p1,train,1,a,40,41\n"
    )
    with pytest.raises(ManifestError, match=r"more than once: 'age' \(columns 6, 7\)"):
        load_cohort(make_spec(tmp_path))


def test_header_spaces_and_a_trailing_separator_are_tolerated(tmp_path):
    (tmp_path / "manifest.csv").write_text(
        " id ,patient,split,y,xray,age,\na,p1,train,1,a,40,\nb,p2,val,0,,41,\n"
    )
    cohort = load_cohort(make_spec(tmp_path))
    assert list(cohort.ids) == ["a", "b"]


def test_a_manifest_that_is_not_utf8_says_how_to_save_it(tmp_path):
    (tmp_path / "manifest.csv").write_bytes(
        "id,patient,split,y,xray,age\na,Müller,train,1,a,40\n".encode("latin-1")
    )
    with pytest.raises(ManifestError, match=r"not UTF-8 text \(byte 0xfc.*save it as UTF-8"):
        load_cohort(make_spec(tmp_path))


def test_assign_splits_without_strata_and_with_one_group():
    groups = pd.Series([f"g{i % 50}" for i in range(200)])
    split = assign_splits(groups, None, SplitRecipe(train=0.8, val=0.2, test=0.0))
    assert set(split) == {"train", "val"}
    assert (split == "val").mean() == pytest.approx(0.2, abs=0.03)
    with pytest.warns(SplitWarning, match="1 group"):
        single = assign_splits(pd.Series(["g"] * 5), None, SplitRecipe())
    assert set(single) == {"train"}


@pytest.mark.parametrize(("sep", "name"), [(";", "';'"), ("\t", "tab")])
def test_a_manifest_with_another_separator_gets_a_hint(tmp_path, sep, name):
    pd.DataFrame(ROWS).to_csv(tmp_path / "manifest.csv", index=False, sep=sep)
    with pytest.raises(ManifestError) as err:
        load_cohort(make_spec(tmp_path))
    message = str(err.value)
    assert "column 'id' (declared by id_column) is not in the manifest" in message
    assert f"the manifest looks {name}-separated: polymodal reads comma-separated CSV" in message


def test_a_semicolon_manifest_with_decimal_commas_gets_the_hint(tmp_path):
    # Rows split unevenly on ',' (the decimals), so pandas cannot even read the table.
    (tmp_path / "manifest.csv").write_text("id;age\na;41,5\nb;7\nc;1,25,3\n")
    with pytest.raises(ManifestError, match=r"cannot read the manifest.*looks ';'-separated"):
        load_cohort(make_spec(tmp_path))


def test_new_rows_may_lack_a_whole_modality_but_not_the_id_column(tmp_path):
    (tmp_path / "new").mkdir()
    without_xray = {k: v for k, v in ROWS.items() if k not in ("xray", "y", "split", "patient")}
    path = write(tmp_path / "new", without_xray, "rows.csv")
    with pytest.warns(UserWarning, match=r"no column of modality 'xray' \(xray\) in the table"):
        cohort = load_cohort(make_spec(tmp_path), manifest_override=path, for_inference=True)
    assert cohort.file_paths(0, "xray") == [None]
    assert list(cohort.groups) == ["a", "b", "c", "d"]
    # Training and validation still require every declared column.
    with pytest.raises(ManifestError, match="is not in the manifest"):
        load_cohort(make_spec(tmp_path), manifest_override=path)
    no_id = write(tmp_path / "new", {k: v for k, v in ROWS.items() if k != "id"}, "no_id.csv")
    with pytest.raises(ManifestError, match=r"column 'id' \(declared by id_column\) is not in"):
        load_cohort(make_spec(tmp_path), manifest_override=no_id, for_inference=True)


def test_new_rows_resolve_files_against_their_own_folder_or_an_explicit_root(tmp_path):
    (tmp_path / "new").mkdir()
    path = write(tmp_path / "new", ROWS, "rows.csv")
    new = load_cohort(make_spec(tmp_path), manifest_override=path, for_inference=True)
    assert new.data_root == tmp_path / "new"
    assert new.file_paths(0, "xray") == [tmp_path / "new" / "img" / "a.png"]
    given = load_cohort(
        make_spec(tmp_path), manifest_override=path, for_inference=True, root=tmp_path
    )
    assert given.file_paths(0, "xray") == [tmp_path / "img" / "a.png"]
    # The root is also the fence: a file beside the new table's folder is outside it.
    with pytest.raises(ReadError, match=f"outside the cohort root {tmp_path / 'new'}") as err:
        new.resolve_path("../img/a.png")
    assert "move it inside, give --root a folder that holds it or set allow_outside_root" in str(
        err.value
    )
    # The spec's own manifest keeps the spec's root.
    write(tmp_path, ROWS)
    (tmp_path / "files").mkdir()
    spec = make_spec(tmp_path, root="files")
    own = load_cohort(spec, manifest_override=tmp_path / "manifest.csv", for_inference=True)
    assert own.data_root == tmp_path / "files"
    with pytest.raises(ManifestError, match="the data root is not a folder"):
        load_cohort(make_spec(tmp_path), manifest_override=path, root=tmp_path / "nowhere")
