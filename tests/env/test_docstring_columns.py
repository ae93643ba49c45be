"""The env docstring's observation table is the feature declarations, column by column (they cannot drift)."""

import re

from sparsity_gym.env.env_config import OBSERVATION_FAMILIES
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.observation.features import GLOBAL, STATE, STATIC, ObservationLayout, registered_column_groups

ROW = re.compile(r"^\s*\|\s*(\w+)\s*\|\s*(\w+)\s*\|(.*)\|\s*([\[{])\s*(-?[\d.]+),\s*(-?[\d.]+)\s*([\]}])\s*\|\s*$")


def _table_rows() -> list[tuple[str, str, float, float]]:
    rows = []
    for line in (SparsityEnv.__doc__ or "").splitlines():
        match = ROW.match(line)
        if match:
            name, family, _, _, low, high, _ = match.groups()
            rows.append((name, family, float(low), float(high)))
    return rows


def test_docstring_table_lists_every_declared_column_in_order_with_its_family_and_bounds():
    families = OBSERVATION_FAMILIES  # the default order of EnvConfig.observations
    assert set(families) == set(registered_column_groups())
    layout = ObservationLayout(1, families)
    family_of = {f.name: fam.name for fam in (STATIC, STATE, *layout.layer_groups, GLOBAL) for f in fam.features}
    declared = [(f.name, family_of[f.name], f.low, f.high) for f in layout.features]
    assert _table_rows() == declared


def test_the_table_parser_sees_the_rows():
    rows = _table_rows()
    assert rows[0] == ("relative_depth", "static", 0.0, 1.0) and len(rows) >= 20
