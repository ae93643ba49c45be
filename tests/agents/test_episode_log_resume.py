"""The learning curve on resume: a killed session's episodes after its last checkpoint are dropped."""

import csv
from types import SimpleNamespace

from agents.run.callbacks import EPISODE_LOG_COLUMNS, EpisodeLogCallback


def _write(path, timesteps):
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=EPISODE_LOG_COLUMNS)
        writer.writeheader()
        for t in timesteps:
            writer.writerow(
                {"timestep": t, "network": "mlp_8", "reward": 0.1, "val_accuracy": 0.5, "final_density": 0.1}
            )


def _start(callback, num_timesteps):
    callback.init_callback(SimpleNamespace(num_timesteps=num_timesteps))
    callback.on_training_start({}, {})


def _timesteps(path):
    with path.open(newline="", encoding="utf-8") as fh:
        return [int(row["timestep"]) for row in csv.DictReader(fh)]


def test_a_resumed_run_drops_the_rows_after_its_checkpoint_and_appends(tmp_path):
    path = tmp_path / "training_episodes.csv"
    _write(path, [10, 20, 30, 40, 50])  # the killed session logged up to 50; its checkpoint was at 30
    callback = EpisodeLogCallback(path)
    _start(callback, 30)
    assert _timesteps(path) == [10, 20, 30]
    callback.locals = {"infos": [{"network": "mlp_8", "val_accuracy": 0.6, "density": 0.1}], "dones": [True]}
    callback.locals["rewards"] = [0.2]
    callback.model.num_timesteps = 40
    callback.on_step()
    callback.on_training_end()
    assert _timesteps(path) == [10, 20, 30, 40]
    # nothing beyond the start: the file is left as it is (byte for byte), and a fresh run starts without one
    before = path.read_bytes()
    _start(EpisodeLogCallback(path), 40)
    assert path.read_bytes() == before
    _start(EpisodeLogCallback(tmp_path / "none.csv"), 0)
    assert not (tmp_path / "none.csv").exists()
