// The checked fields of the settings panel (members, threshold, iterations): what each accepts,
// how its value in effect reads, and what asks for confirmation (validate.ts does the rest).

import { formatModelSpec, parseModelSpec } from "./state";
import {
  THRESHOLD_ZERO,
  ValidatedField,
  checkIterations,
  checkMembers,
  checkThreshold,
  orderProblem,
  type Checked,
} from "./validate";

type Json = Record<string, any>;
type Apply = (partial: Json, refuse: (message: string) => void) => void;

export interface SettingsFields {
  spec: ValidatedField<string>;
  threshold: ValidatedField<number>;
  minIt: ValidatedField<number>;
  maxIt: ValidatedField<number>;
}

/** A number as the field shows it (no float noise such as 0.30000000000000004). */
function formatNumber(value: unknown): string {
  const n = Number(value);
  return Number.isFinite(n) ? String(Math.round(n * 1e6) / 1e6) : String(value ?? "");
}

/** Wire the checked fields: each sends only its own setting, once its value passes. */
export function settingsFields(
  inputs: { spec: HTMLInputElement; threshold: HTMLInputElement; minIt: HTMLInputElement; maxIt: HTMLInputElement },
  config: () => Json,
  known: () => string[],
  apply: Apply,
): SettingsFields {
  const iterations = (which: "minimum_iterations" | "max_iterations", label: string) => ({
    check(text: string): Checked<number> {
      const checked = checkIterations(text, label);
      if (!checked.ok) return checked;
      const c = config();
      const min = which === "minimum_iterations" ? checked.value : Number(c.minimum_iterations ?? 1);
      const max = which === "max_iterations" ? checked.value : Number(c.max_iterations ?? 3);
      const problem = orderProblem(min, max);
      return problem ? { ok: false, error: problem } : checked;
    },
    commit: (value: number, refuse: (m: string) => void) => apply({ [which]: value }, refuse),
    format: formatNumber,
  });
  return {
    spec: new ValidatedField(inputs.spec, {
      check: checkMembers,
      commit: (text, refuse) => apply({ models: parseModelSpec(text, known()) }, refuse),
      format: (models) => formatModelSpec((models as Record<string, number>) ?? {}),
    }),
    threshold: new ValidatedField(inputs.threshold, {
      check: checkThreshold,
      commit: (value, refuse) => apply({ confidence_threshold: value }, refuse),
      format: formatNumber,
      confirm: (value) => (value === 0 && Number(config().confidence_threshold) !== 0 ? THRESHOLD_ZERO : null),
    }),
    minIt: new ValidatedField(inputs.minIt, iterations("minimum_iterations", "Minimum iterations")),
    maxIt: new ValidatedField(inputs.maxIt, iterations("max_iterations", "Maximum iterations")),
  };
}
