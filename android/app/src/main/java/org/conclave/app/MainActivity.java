package org.conclave.app;

import com.getcapacitor.BridgeActivity;

public class MainActivity extends BridgeActivity {}
