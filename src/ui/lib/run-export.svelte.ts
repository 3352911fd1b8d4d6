// The app's current choices (form, model, dataset) as a LLaMA-Factory run folder, and a loaded
// YAML applied back to them. The planning and the text are src/ui/lib/llamafactory.ts's.

import type { DataFolder, LlamaFactoryExport } from '../../config';
import { app, chooseData, chooseModel, DEMO_MODEL_ID, demoDataBase, persist, refreshPreview } from './app.svelte';
import type { DataFormat } from '../../data/describe';
import { appConfig, exportRun, loadRunYaml, memoryFolder, uploadRun, type LoadedConfig, type RunSources, type UploadChoice } from './llamafactory';

/** Where the chosen dataset's files are read, and how the config names it. */
function dataSources(): { sources: Omit<RunSources, 'model'>; folder: DataFolder } {
  const d = app.data;
  if (d.kind === 'hub') return { sources: { dataset: d.repo, dir: 'ONLINE' }, folder: memoryFolder({}) };
  if (d.kind === 'demo') {
    const file = app.demoInfo[d.dataset]?.file_name;
    if (typeof file !== 'string') throw new Error(`the demo dataset ${d.dataset} has no file_name in its dataset_info.json`);
    const fetchFile = async (url: string) => {
      const res = await fetch(url);
      return res.ok ? new Uint8Array(await res.arrayBuffer()) : null;
    };
    return { sources: { dataset: file, dir: demoDataBase() }, folder: memoryFolder({}, fetchFile) };
  }
  return uploadRun($state.snapshot(d) as UploadChoice, app.dataFormat ? ($state.snapshot(app.dataFormat) as DataFormat) : null);
}

export const modelName = () => (app.model.kind === 'demo' ? DEMO_MODEL_ID : app.model.id);

/** The current choices as the run `crucible export-config --to llamafactory --out crucible-run` writes. */
export async function currentRun(): Promise<{ plan: LlamaFactoryExport; folder: DataFolder }> {
  const { sources, folder } = dataSources();
  const config = appConfig($state.snapshot(app.settings) as Record<string, unknown>, { model: modelName(), ...sources });
  return { plan: await exportRun(config, folder), folder };
}

/**
 * A YAML's settings into the form, its model and a demo dataset it names chosen; returns what was
 * loaded, with the dataset listed among the skipped keys when it is none of the demo's.
 */
export function applyLoaded(loaded: LoadedConfig): LoadedConfig {
  app.settings = loaded.settings;
  persist();
  const skipped = [...loaded.skipped];
  if (loaded.model && loaded.model !== modelName()) {
    if (loaded.model === DEMO_MODEL_ID) chooseModel({ kind: 'demo' });
    else if (/^[\w.-]+\/[\w.-]+$/.test(loaded.model)) chooseModel({ kind: 'hub', id: loaded.model });
    else skipped.push({ key: 'model_name_or_path', why: `${loaded.model} is a local path: choose or download the model in the Model panel` });
  }
  const demo = loaded.dataset && app.demoDatasets.find((n) => n === loaded.dataset || app.demoInfo[n]?.file_name === loaded.dataset);
  if (demo) chooseData({ kind: 'demo', dataset: demo });
  else {
    if (loaded.dataset) skipped.push({ key: 'dataset', why: `${loaded.dataset} is not a demo dataset: upload its files in the Dataset panel` });
    void refreshPreview();
  }
  return { ...loaded, skipped };
}

export const loadYamlFile = async (file: File): Promise<LoadedConfig> => applyLoaded(loadRunYaml(await file.text(), file.name));
