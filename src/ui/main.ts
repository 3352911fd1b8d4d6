// The app's entry: mount the Svelte app, register the offline service worker.
import { mount } from 'svelte';
import App from './App.svelte';
import './app.css';
import { registerOffline } from './lib/offline';

mount(App, { target: document.getElementById('app')! });
void registerOffline();
