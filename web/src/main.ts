import { mount } from 'svelte';
import App from './App.svelte';
import { applyLaunch } from './launch.js';

const target = document.getElementById('app');
if (target === null) throw new Error('no #app element');
applyLaunch(window);
mount(App, { target });
