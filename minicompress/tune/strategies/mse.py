"""MSE strategy: rank operators by the output error that quantizing each one *alone* causes.

For every tunable operator i, build the model with only i in INT8 (the rest fp32) and measure, on the
calibration batches, the mean squared error of the model's output against the float model's:

    e_i = mean_over_batches( mean( (f(x) - f_i(x))^2 ) )

No evaluation function is needed for this ranking (only forward passes), so it is cheaper than basic's
stage 2. Then: all-INT8 (with each recipe), and accumulated fallback of the operators with the largest e_i.

Reference: Intel Neural Compressor, `strategy/mse.py`.
"""
from ..space import uniform_config, with_ops
from .base import Strategy, accumulate_stage, recipe_stage


class MSEStrategy(Strategy):
    name = "mse"

    def search(self, ctx):
        recipe, base = yield from recipe_stage(ctx)
        float_config = uniform_config(ctx.ops, "fp32")
        errors = [(ctx.output_error(with_ops(float_config, [op], "int8", recipe)), position, op)
                  for position, op in enumerate(ctx.ops)]
        self.errors = {op: err for err, _, op in errors}
        order = [op for _, _, op in sorted(errors, key=lambda r: (-r[0], r[1]))]
        yield from accumulate_stage(ctx, base, order, "mse-ranked")
