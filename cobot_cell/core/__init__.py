"""Pure core: cell file model, PackML cell machine, job sequencer, clock and ports."""
