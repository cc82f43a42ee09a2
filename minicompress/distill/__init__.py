"""minicompress.distill: knowledge distillation (Hinton et al., 2015), FitNets hints, attention transfer,
student construction (smaller MLP, DistilBERT init) and a `Distiller` callback for `fit`.

    student = smaller_mlp(teacher, width=0.25)
    fit(student, (X, y), callbacks=[Distiller(teacher, temperature=4.0, alpha=0.9)])
"""
from .distiller import UNLABELLED, Distiller
from .features import AttentionDistiller, FeatureDistiller, attention_map_loss
from .losses import distillation_loss, kd_loss, logit_mse_loss, soft_cross_entropy
from .students import distilbert_init, smaller_mlp

__all__ = ["kd_loss", "distillation_loss", "soft_cross_entropy", "logit_mse_loss", "FeatureDistiller",
           "AttentionDistiller", "attention_map_loss", "Distiller", "UNLABELLED", "smaller_mlp", "distilbert_init"]
