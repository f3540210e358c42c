// Preact with htm tagged templates: components without a build step.
import { h, render, Fragment, Component } from "../vendor/preact.js";
import { useState, useEffect, useRef, useMemo, useCallback, useLayoutEffect } from "../vendor/hooks.js";
import htm from "../vendor/htm.js";

export const html = htm.bind(h);
export { h, render, Fragment, Component, useState, useEffect, useRef, useMemo, useCallback, useLayoutEffect };
