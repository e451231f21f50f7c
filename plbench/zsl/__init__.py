"""Zero-shot multi-label classification: seen / unseen splits (:mod:`plbench.zsl.splits`) and the
ZSL / GZSL metrics of the zero-shot papers (:mod:`plbench.zsl.metrics`)."""
