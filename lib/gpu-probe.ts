// The probe process of lib/gpus.ts probePin: started with a GPU pin's environment, prints the
// adapters Dawn sees as one JSON line (the device-select layer's debug lines go to stderr).
import { create } from 'webgpu';
import { dawnAdapterNames } from './gpus';

dawnAdapterNames(create).then(
  (names) => {
    console.log(JSON.stringify(names));
    process.exit(0);
  },
  (e) => {
    console.error(`gpu-probe: ${(e as Error).message}`);
    process.exit(1);
  },
);
