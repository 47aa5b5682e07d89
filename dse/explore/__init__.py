"""Design-space exploration: design spaces, search strategies, Pareto fronts, plots, the result store.

``run_exploration(space, cost_fn=...)`` evaluates a space (``load_space``) into ``outputs/<run>/``;
``dse.api.explore`` is the user's entry point (it supplies the cost model).
"""

from dse.explore.accuracy import AccuracySettings, SimulatorAccuracy, accuracy_fields
from dse.explore.objectives import OBJECTIVES
from dse.explore.pareto import non_dominated
from dse.explore.plots import replot
from dse.explore.points import Point, grid, grid_size
from dse.explore.run import Exploration, run_exploration
from dse.explore.space import DesignSpace, Space, load_space, space_from_data

__all__ = [
    "OBJECTIVES",
    "AccuracySettings",
    "DesignSpace",
    "Exploration",
    "Point",
    "SimulatorAccuracy",
    "Space",
    "accuracy_fields",
    "grid",
    "grid_size",
    "load_space",
    "non_dominated",
    "replot",
    "run_exploration",
    "space_from_data",
]
