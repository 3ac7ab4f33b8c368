// The Capacitor wrappers (issue 7): the same built app (`npm run build` → dist/web) inside an
// Android and an iOS shell. `npm run mobile:sync` builds it and copies it into android/ and ios/;
// README.md ("Mobile and desktop") says how to build each natively.
import type { CapacitorConfig } from '@capacitor/cli';

const config: CapacitorConfig = {
  appId: 'org.conclave.app',
  appName: 'Conclave',
  webDir: 'dist/web',
  plugins: {
    LocalNotifications: {
      iconColor: '#4c1d95',
    },
  },
};

export default config;
