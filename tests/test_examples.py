"""Every example script runs and prints the facts it is there to show."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"

# script -> lines (regular expressions) its output must contain
FACTS = {
    "01_gradients_adam.py": [
        r"gradient by hand vs autograd: max \|diff\| = \d\.\d+e-1[5-9]",
        r"Adam step 1: hand \(state kept\) vs torch.optim.Adam max \|diff\| = \S+; "
        r"tutorial's reset version = 0\.00e\+00",
        r"Adam step 2: hand \(state kept\) vs torch.optim.Adam max \|diff\| = 0\.00e\+00; "
        r"tutorial's reset version = [1-9]\.\d+e-0[78]",
        r"Adam step 5: hand .* max \|diff\| = \d\.\d+e-1[6-9]",
        r"verify: 3/3 layers agree with their numpy reference$",
    ],
    "02_embedding.py": [
        r"output shape: \(2, 4, 4\)",
        r"output\[0, 0\], the padding index 0: \[0\.0, 0\.0, 0\.0, 0\.0\]",
        r"embedding_padding_row: weight\[padding_idx=0\] is all zero",
        r"verify: 1/1 layers agree with their numpy reference$",
    ],
    "03_pooling.py": [
        r"MaxPool1d L: .* = 3, got 3",
        r"AvgPool1d L: .*/2 \+ 1\) = 2, got 2",
        r"MaxPool2d\(\(4, 1\)\) is the column-wise max of the 4x4 embedding: True",
        r"verify: 5/5 layers agree with their numpy reference$",
    ],
    "04_rnn.py": [
        r"RNN .*\[1, 4, 5\] .*\[1, 4, 6\], \[2, 1, 6\]",
        r"batch_first=True reads \(1, 4, 5\) as batch 1, 4 steps",
        r"same numbers either way: True",
        r"read as 1 step of batch 4",
        r"verify: 1/1 layers agree with their numpy reference$",
    ],
    "05_conv1d.py": [
        r" 256  3  1  0  1       254    254  ok     agrees",
        r" 100  3  3  0  2        32     32  ok     agrees",
        r"Conv1d L: .* = 62, got 62",
        r"Linear\(in_features=2048\) got last dim 1984",
    ],
    "06_normalization.py": [
        r"batch: BatchNorm1d \(training\): .*per channel, over the batch, over axes \(0, 2\)",
        r"layer: LayerNorm \(training\): .*per sample over axes \(1, 2\)",
        r"instance: InstanceNorm1d \(training\): .*per sample and channel over axes \(2,\)",
        r"verify: 3/3 layers agree with their numpy reference$",
    ],
    "07_dropout.py": [
        r"train:  \[2\.5, 5\.0, 0\.0, 10\.0, 0\.0, 0\.0\]",
        r"0 of 6 checked elements are neither",
        r"eval:   \[1\.0, 2\.0, 3\.0, 4\.0, 5\.0, 6\.0\]",
        r"on 100,000 ones: dropped 59\.\d%|on 100,000 ones: dropped 60\.\d%",
        r"verify \(train, from the mask it drew\): 1/1 layers agree with their numpy reference$",
    ],
    "08_abc_classifier.py": [
        r"trained \d+ epochs in \d+\.\d s, validation accuracy (99\.[5-9]\d|100\.00)%",
        r"accuracy on 2,000 fresh strings: (99\.[5-9]\d|100\.00)%",
        r"xyzab: class 0 .*ground truth 0",
        r"verify: 3/3 layers agree with their numpy reference$",
    ],
    "09_watch_training.py": [
        r"^\[step \d+\] nan: log_softmax \(NaiveLogSoftmax\): output has \d+ NaN and \d+ Inf values while its inputs "
        r"were finite$",
        r"^first bad layer: log_softmax \(NaiveLogSoftmax\) at step \d+$",
    ],
    "quickstart.py": [r"rnn output shapes: \(\(4, 6, 20\), \(2, 4, 20\)\)"],
    "custom_inspector.py": [r"failed: \['gain_positive: gain must be positive'\]"],
}


def test_every_example_is_covered() -> None:
    assert sorted(FACTS) == sorted(p.name for p in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("script", sorted(FACTS))
def test_example_prints_its_facts(script: str) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for fact in FACTS[script]:
        assert re.search(fact, done.stdout, re.M), f"{script}: no line matches {fact!r}\n{done.stdout}"
