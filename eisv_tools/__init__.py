"""The command-line tools of eisv, thin `main`s over `eisv_evaluation` (installed as console scripts).

`eisv-verify` (two files -> score + decision), `eisv-embed` (many files -> embedding matrix + index
CSV), `eisv-eval` (trial list -> EER, minDCF, DET curve), `eisv-calibrate`, `eisv-adapt`,
`eisv-convert`, `eisv-export`; each also runs as `python -m eisv_tools.NAME`. The library they call
(evaluation, trials, embedding store, windowed embedding, loading, ONNX) is `eisv_evaluation`.
"""
