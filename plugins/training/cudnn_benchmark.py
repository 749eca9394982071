"""cudnn_benchmark: let cuDNN time its convolution algorithms for each input shape and keep the
fastest. Pays off when shapes repeat, which they do in training."""

from autotune import Knob, Need, Param, TrainingPlan, hookimpl


class CudnnBenchmark(Knob):
    name = "cudnn_benchmark"
    help = "torch.backends.cudnn.benchmark (CUDA only)"
    kind = "systems"
    needs = (Need.CUDA, Need.CONVOLUTIONS)

    def params(self, hardware):
        return [Param("cudnn_benchmark", "bool")]

    def baseline(self, hardware):
        return {"cudnn_benchmark": False}

    def apply(self, settings, plan: TrainingPlan):
        import torch

        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
        plan.notes["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        plan.on_cleanup(lambda: setattr(torch.backends.cudnn, "benchmark", previous))


@hookimpl
def register_knobs(register):
    register(CudnnBenchmark())
